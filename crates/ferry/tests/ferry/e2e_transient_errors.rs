//! Transient API errors (a 5xx, a conflict, a timeout) during expose or rebind are retried, never
//! fatal: the restore completes, its data mover ran once, and the restored PV is the one the
//! target gets (never deleted over a passing error). A DataDownload that changes while the
//! controller writes it is not overwritten: the write is conditional and is made again.

use crate::common;

use std::time::Duration;

use common::gate::{Gate, Rule};
use common::*;
use ferry_controller::start_controller;
use http::Method;
use serde_json::json;

on_both_clusters! {
    async fn e2e_transient_errors_in_expose_and_rebind_are_retried(backend: Backend) {
        let env = env(backend, 1, 0, json!({"restorePVC": {"ignoreDelayBinding": true}})).await;
        restores(&env, 1, "standard").await;
        let gates = [
            // Expose: creating the restore pod.
            Gate::new(Rule::fail(Method::POST, "/namespaces/velero/pods", 503)),
            // Rebind: retaining the restored PV, then reserving it for the target.
            Gate::new(Rule::fail(Method::PATCH, "/api/v1/persistentvolumes/", 500).body(r#""Retain""#)),
            Gate::new(Rule::fail(Method::PATCH, "/api/v1/persistentvolumes/", 504).body(r#""claimRef""#)),
            // Rebind: deleting the restore PVC.
            Gate::new(Rule::fail(Method::DELETE, "/namespaces/velero/persistentvolumeclaims/dd-0", 409)),
        ];
        let client = gates
            .iter()
            .fold(env.controller_client.clone(), |client, gate| gate.client(client));
        let mut options = options(client);
        // Retries come with the next pass; make it soon.
        options.resync_interval = Duration::from_secs(1);
        let ctl = start_controller(options).await.unwrap();
        wait_completed(&env, "dd-0", 60).await;
        for gate in &gates {
            gate.wait_hit(1).await;
        }
        assert_restored(&env, 0).await;
        env.movers.assert_each_started_once();
        assert_no_leftovers(&env).await;
        ctl.stop().await;
        env.cluster.stop().await;
    }
}

on_both_clusters! {
    async fn e2e_a_change_during_acceptance_is_kept_not_overwritten(backend: Backend) {
        let env = env(backend, 1, 0, json!({"restorePVC": {"ignoreDelayBinding": true}})).await;
        restores(&env, 1, "standard").await;
        // The acceptance (which writes the whole finalizer list) is held while another party
        // adds a finalizer of its own to the DataDownload.
        let gate = Gate::new(
            Rule::hold(Method::PATCH, "/namespaces/velero/datadownloads/dd-0").body(r#""Accepted""#),
        );
        let mut options = options(gate.client(env.controller_client.clone()));
        options.resync_interval = Duration::from_secs(1);
        let ctl = start_controller(options).await.unwrap();
        gate.wait_hit(30).await;
        let downloads = kube::Api::<ferry_controller::crds::DataDownload>::namespaced(env.client.clone(), NS);
        let theirs = "example.com/audit";
        downloads
            .patch(
                "dd-0",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(json!({"metadata": {"finalizers": [theirs]}})),
            )
            .await
            .unwrap();
        gate.release();
        wait_completed(&env, "dd-0", 60).await;
        let dd = downloads.get("dd-0").await.unwrap();
        assert_eq!(
            dd.metadata.finalizers.as_deref(),
            Some(&[theirs.to_string()][..]),
            "the other party's finalizer survived ferry's acceptance (and ferry's own is gone once done)"
        );
        assert_restored(&env, 0).await;
        env.movers.assert_each_started_once();
        downloads
            .patch(
                "dd-0",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(json!({"metadata": {"finalizers": null}})),
            )
            .await
            .unwrap();
        ctl.stop().await;
        env.cluster.stop().await;
    }
}
