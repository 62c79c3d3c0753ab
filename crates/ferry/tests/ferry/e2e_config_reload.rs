//! A change to the node-agent ConfigMap takes effect while the controller runs: no restart.
//! Each change is first shown to have been seen through a restore already waiting on the old
//! configuration, so the checks on restores created afterwards do not depend on timing.

use crate::common;

use common::*;
use ferry_controller::crds::DataDownloadPhase;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use serde_json::json;

async fn waiting_message(env: &Env, dd: &str, fragment: &str) {
    wait_for(&format!("{dd} waiting: {fragment}"), 30, || async {
        let dd = get_dd(env, dd).await;
        let message = dd.status.and_then(|s| s.message).unwrap_or_default();
        message.contains(fragment).then_some(())
    })
    .await;
}

async fn node_of(env: &Env, dd: &str) -> String {
    let dd = wait_completed(env, dd, 60).await;
    dd.status.unwrap().node.unwrap()
}

on_both_clusters! {
    async fn e2e_config_changes_apply_to_new_restores_without_a_restart(backend: Backend) {
        let env = env(backend, 2, 0, json!({})).await;
        restore_of(&env, 0, "standard").await;
        let ctl = controller(&env).await;
        // Default: dd-0 waits for a workload.
        waiting_message(&env, "dd-0", "to be consumed").await;
        let pods: Api<Pod> = Api::namespaced(env.client.clone(), NS);
        assert!(
            pods.list(&ListParams::default())
                .await
                .unwrap()
                .items
                .is_empty()
        );

        // ignoreDelayBinding switched on: the waiting restore goes ahead, and one created
        // afterwards starts at once; neither has a workload.
        set_config(
            &env.client,
            json!({"restorePVC": {"ignoreDelayBinding": true}}),
        )
        .await;
        wait_for("dd-0 to get a node", 30, || async {
            get_dd(&env, "dd-0").await.status?.node
        })
        .await;
        restore_of(&env, 1, "standard").await;
        for i in 0..2 {
            node_of(&env, &format!("dd-{i}")).await;
            assert_restored(&env, i).await;
        }

        // A loadAffinity no node matches: dd-2 waits for a node.
        set_config(
            &env.client,
            json!({"restorePVC": {"ignoreDelayBinding": true},
                   "loadAffinity": [{"nodeSelector": {"matchLabels": {"kubernetes.io/hostname": "node-9"}}}]}),
        )
        .await;
        restore_of(&env, 2, "standard").await;
        waiting_message(&env, "dd-2", "not matching the loadAffinity").await;
        assert_eq!(
            get_dd(&env, "dd-2").await.phase(),
            DataDownloadPhase::Accepted
        );
        // Narrowed to node-2 (node-1 would win the tie otherwise): dd-2 and a new dd-3 run there.
        set_config(
            &env.client,
            json!({"restorePVC": {"ignoreDelayBinding": true},
                   "loadAffinity": [{"nodeSelector": {"matchLabels": {"kubernetes.io/hostname": "node-2"}}}]}),
        )
        .await;
        assert_eq!(node_of(&env, "dd-2").await, "node-2");
        restore_of(&env, 3, "standard").await;
        assert_eq!(node_of(&env, "dd-3").await, "node-2");
        for i in 2..4 {
            assert_restored(&env, i).await;
        }
        env.movers.assert_each_started_once();
        assert_no_leftovers(&env).await;
        ctl.stop().await;
        env.cluster.stop().await;
    }
}

on_both_clusters! {
    /// An invalid ConfigMap written while the controller runs is not applied: the controller
    /// keeps the last good configuration and goes on restoring.
    async fn e2e_invalid_config_change_keeps_the_last_good_configuration(backend: Backend) {
        let env = env(backend, 2, 0, json!({"restorePVC": {"ignoreDelayBinding": true}})).await;
        let ctl = controller(&env).await;
        settle(&ctl).await;
        // Not valid: loadConcurrency must be a positive number.
        set_config(
            &env.client,
            json!({"loadConcurrency": {"globalConfig": "many"}}),
        )
        .await;
        settle(&ctl).await;
        restore_of(&env, 0, "standard").await;
        node_of(&env, "dd-0").await;
        assert_restored(&env, 0).await;
        assert_no_leftovers(&env).await;
        ctl.stop().await;
        env.cluster.stop().await;
    }
}
