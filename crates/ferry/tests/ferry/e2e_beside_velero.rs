//! Living beside Velero's node-agent: when it restarts, it sets spec.cancel (and a message) on
//! every InProgress DataDownload whose status.node is its node, without looking at
//! spec.datamover (Velero's AttemptDataDownloadResume). For a ferry restore whose data is
//! still moving that is a cancel: it ends Canceled, keeping Velero's reason in the message,
//! with nothing left behind and the target PVC untouched. Once the data has moved, the cancel
//! is ignored and the restore completes (e2e_restart covers that case).

use crate::common;

use common::*;
use ferry_controller::crds::{DataDownload, DataDownloadPhase};
use kube::Api;
use kube::api::PostParams;
use serde_json::json;

const VELERO_MESSAGE: &str = "Resume InProgress datadownload failed with error error to get exposed volume for dd dd-0, mark it as cancel";

on_both_clusters! {
    async fn e2e_velero_node_agent_restart_cancels_a_moving_ferry_restore_cleanly(backend: Backend) {
        let env = env(backend, 1, 0, json!({"restorePVC": {"ignoreDelayBinding": true}})).await;
        restores(&env, 1, "standard").await;
        env.movers.hold("dd-0");
        let ctl = controller(&env).await;
        env.movers.wait_started("dd-0", 60).await;
        let dd = wait_phase(&env, "dd-0", &[DataDownloadPhase::InProgress], 30).await;
        assert!(dd.status.as_ref().unwrap().node.is_some());

        // As Velero's node-agent does it: get, set spec.cancel and status.message, update
        // (the CRD has no status subresource), as field manager "velero".
        // Retried on a conflict, as Velero's UpdateDataDownloadWithRetry.
        let downloads: Api<DataDownload> = Api::namespaced(env.client.clone(), NS);
        let params = PostParams {
            field_manager: Some("velero".into()),
            ..PostParams::default()
        };
        wait_for("Velero's cancel written", 30, || async {
            let mut dd = downloads.get("dd-0").await.unwrap();
            dd.spec.cancel = Some(true);
            dd.status.as_mut().unwrap().message = Some(VELERO_MESSAGE.into());
            match downloads.replace("dd-0", &params, &dd).await {
                Ok(_) => Some(()),
                Err(kube::Error::Api(e)) if e.code == 409 => None,
                Err(e) => panic!("{e}"),
            }
        })
        .await;

        let dd = wait_phase(&env, "dd-0", DONE, 60).await;
        assert_eq!(dd.phase(), DataDownloadPhase::Canceled, "{:?}", dd.status);
        let status = dd.status.unwrap();
        let message = status.message.unwrap();
        assert!(
            message.starts_with("canceled: spec.cancel was set") && message.contains(VELERO_MESSAGE),
            "{message}"
        );
        assert!(status.completion_timestamp.is_some());
        env.movers.release("dd-0");
        assert_target_unbound(&env, "pvc-0").await;
        assert_no_leftovers(&env).await;
        env.movers.assert_each_started_once();
        ctl.stop().await;
        env.cluster.stop().await;
    }
}
