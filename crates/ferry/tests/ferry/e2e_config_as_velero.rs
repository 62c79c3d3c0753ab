//! The node-agent ConfigMap as Velero's node-agent reads it: values Velero tolerates load (with
//! a warning) instead of stopping the controller, and a priorityClassName naming no
//! PriorityClass is dropped rather than failing every restore pod.

use crate::common;

use common::*;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use serde_json::json;

on_both_clusters! {
    async fn e2e_config_velero_accepts_restores_with_a_missing_priority_class_dropped(backend: Backend) {
        let env = env(
            backend,
            1,
            0,
            json!({
                "restorePVC": {"ignoreDelayBinding": true},
                // Velero: 0 means 1. An invalid podResources section is dropped whole.
                "loadConcurrency": {"globalConfig": 0},
                "podResources": {"cpuRequest": "lots"},
                "priorityClassName": "no-such-class",
            }),
        )
        .await;
        restores(&env, 1, "standard").await;
        env.movers.hold("dd-0");
        let ctl = controller(&env).await;
        env.movers.wait_started("dd-0", 60).await;
        let pod = Api::<Pod>::namespaced(env.client.clone(), NS)
            .get("dd-0")
            .await
            .unwrap();
        let spec = pod.spec.unwrap();
        assert_eq!(spec.priority_class_name, None);
        let resources = spec.containers[0].resources.clone().unwrap_or_default();
        assert!(resources.requests.is_none() && resources.limits.is_none(), "{resources:?}");
        env.movers.release("dd-0");
        wait_completed(&env, "dd-0", 60).await;
        assert_restored(&env, 0).await;
        assert_no_leftovers(&env).await;
        ctl.stop().await;
        env.cluster.stop().await;
    }
}
