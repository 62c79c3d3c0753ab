//! `ferry install`, applied to the real control plane, gives a controller that runs as a
//! Deployment: kube-controller-manager creates its ReplicaSet and pod, kube-scheduler places
//! the pod on a kubesim node, the kubelet runs it as the `ferry-controller` service account,
//! and that controller restores. kubesim alone runs no workload controllers (docs/kubesim.md),
//! so this test is on the real control plane only.

use crate::common;

use common::*;
use ferry_controller::crds::DataDownloadPhase;
use ferry_controller::install::CONTROLLER_NAME;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, ListParams};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installed_controller_deployment_runs_on_the_real_cluster_and_restores() {
    let env = env(
        Backend::Real,
        2,
        0,
        json!({"restorePVC": {"ignoreDelayBinding": true}}),
    )
    .await;
    let install = |extra: &'static [&'static str]| {
        let kubeconfig = env.cluster.kubeconfig_path();
        async move {
            let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
                .args([
                    "install",
                    "--namespace",
                    NS,
                    "--node-agent-configmap",
                    CONFIGMAP,
                ])
                .args(extra)
                .env("KUBECONFIG", kubeconfig)
                .output()
                .await
                .unwrap();
            assert!(
                out.status.success(),
                "ferry install: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        }
    };
    install(&[]).await;

    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), NS);
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), NS);
    let selector = "app.kubernetes.io/name=ferry,app.kubernetes.io/component=controller";
    let mut polls = 0u32;
    wait_for("the controller Deployment available", 90, || {
        polls += 1;
        // Now and then, say where its pod is (a stuck rollout otherwise times out silently).
        let report = polls.is_multiple_of(50);
        let (deployments, pods) = (deployments.clone(), pods.clone());
        async move {
            let status = deployments.get(CONTROLLER_NAME).await.unwrap().status;
            let status = status.unwrap_or_default();
            if status.available_replicas == Some(1) {
                return Some(());
            }
            if report {
                let list = pods.list(&ListParams::default().labels(selector)).await;
                eprintln!(
                    "deployment: {status:?}; pods: {:?}",
                    list.map(|l| l
                        .items
                        .into_iter()
                        .map(|p| (
                            p.spec.and_then(|s| s.node_name),
                            p.status.and_then(|s| s.phase)
                        ))
                        .collect::<Vec<_>>())
                );
            }
            None
        }
    })
    .await;
    let pod = pods
        .list(&ListParams::default().labels(selector))
        .await
        .unwrap()
        .items
        .into_iter()
        .next()
        .expect("the controller's pod");
    let spec = pod.spec.unwrap();
    assert_eq!(spec.service_account_name.as_deref(), Some(CONTROLLER_NAME));
    assert!(
        spec.node_name.is_some_and(|n| n.starts_with("node-")),
        "placed on a kubesim node"
    );

    // No controller in this process: the Deployment's restores the volumes.
    restores(&env, 2, "standard").await;
    for i in 0..2 {
        let dd = wait_phase(&env, &format!("dd-{i}"), DONE, 120).await;
        assert_eq!(
            dd.phase(),
            DataDownloadPhase::Completed,
            "dd-{i}: {:?}",
            dd.status.and_then(|s| s.message)
        );
        assert_restored(&env, i).await;
    }
    // The installed controller's role lets it record its events (events.k8s.io/v1).
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(env.client.clone(), NS);
    let recorded = events.list(&ListParams::default()).await.unwrap().items;
    assert!(
        recorded
            .iter()
            .any(|e| e.reason.as_deref() == Some("Completed")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("dd-0")),
        "a Completed event on dd-0 among {:?}",
        recorded
            .iter()
            .map(|e| (&e.reason, &e.regarding))
            .collect::<Vec<_>>()
    );

    // Server-side apply: installing again writes nothing, though the Deployment's controller
    // has written its status and revision meanwhile; a field another manager owns (here an
    // annotation, as another tool would add) survives an install that changes ferry's fields.
    let again = install(&[]).await;
    assert!(
        again
            .lines()
            .all(|l| l.ends_with(" unchanged") || l.contains("not managed by ferry")),
        "{again}"
    );
    let annotation = json!({"metadata": {"annotations": {"example.com/owner": "platform-team"}}});
    deployments
        .patch(
            CONTROLLER_NAME,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&annotation),
        )
        .await
        .unwrap();
    let changed = install(&["--data-mover-name=ferry-two"]).await;
    let configured: Vec<&str> = changed
        .lines()
        .filter(|l| l.ends_with(" configured"))
        .collect();
    assert_eq!(
        configured,
        ["deployment.apps/ferry-controller configured"],
        "{changed}"
    );
    let deployment = deployments.get(CONTROLLER_NAME).await.unwrap();
    assert_eq!(
        deployment
            .metadata
            .annotations
            .unwrap_or_default()
            .get("example.com/owner"),
        Some(&"platform-team".to_string()),
        "another manager's annotation kept"
    );

    // The controller goes with its Deployment (the garbage collector, then the kubelet); what
    // is left must be nothing of the restores.
    deployments
        .delete(CONTROLLER_NAME, &DeleteParams::foreground())
        .await
        .unwrap();
    wait_for("the controller's pod gone", 60, || async {
        let list = pods.list(&ListParams::default().labels(selector)).await;
        list.unwrap().items.is_empty().then_some(())
    })
    .await;
    assert_no_leftovers(&env).await;
}
