//! Scheduling with volumes and the PV controller against a running kubesim: delayed binding,
//! allowedTopologies, claimRef pre-binding, reclaim policies, Block volumes, selectors.

mod nodes_support;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use nodes_support::*;

const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";

fn pv_node(pv: &PersistentVolume) -> String {
    pv.spec
        .as_ref()
        .unwrap()
        .node_affinity
        .as_ref()
        .unwrap()
        .required
        .as_ref()
        .unwrap()
        .node_selector_terms[0]
        .match_expressions
        .as_ref()
        .unwrap()[0]
        .values
        .as_ref()
        .unwrap()[0]
        .clone()
}

#[tokio::test]
async fn wait_for_first_consumer_claim_gets_the_pods_node_and_a_pv_there() {
    let t = start(3, 0).await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(t.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(t.client.clone(), "default");
    let pvs: Api<PersistentVolume> = Api::all(t.client.clone());
    create(&claims, &claim("data", "1Gi", None)).await;
    // Without a consumer the claim waits.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let waiting = claims.get("data").await.unwrap();
    assert_eq!(waiting.status.unwrap().phase.as_deref(), Some("Pending"));
    assert!(
        waiting
            .metadata
            .annotations
            .unwrap_or_default()
            .get(SELECTED_NODE)
            .is_none()
    );

    create(&pods, &pod("app", &["data"], Some(vec!["sleep", "300"]))).await;
    let node = eventually("pod scheduled", || async {
        pods.get("app").await.ok()?.spec?.node_name
    })
    .await;
    let bound = eventually("claim bound", || async {
        let c = claims.get("data").await.ok()?;
        (c.status.as_ref()?.phase.as_deref() == Some("Bound")).then_some(c)
    })
    .await;
    let annotations = bound.metadata.annotations.clone().unwrap();
    assert_eq!(annotations[SELECTED_NODE], node);
    assert_eq!(annotations["pv.kubernetes.io/bind-completed"], "yes");
    assert_eq!(
        annotations["volume.kubernetes.io/storage-provisioner"],
        "kubesim.io/hostpath"
    );
    let pv_name = bound.spec.as_ref().unwrap().volume_name.clone().unwrap();
    assert_eq!(
        pv_name,
        format!("pvc-{}", bound.metadata.uid.as_ref().unwrap())
    );
    let pv = pvs.get(&pv_name).await.unwrap();
    assert_eq!(pv_node(&pv), node);
    assert_eq!(pv.status.as_ref().unwrap().phase.as_deref(), Some("Bound"));
    assert_eq!(
        pv.spec.as_ref().unwrap().capacity.as_ref().unwrap()["storage"].0,
        "1Gi"
    );
    assert_eq!(
        pv.metadata.annotations.as_ref().unwrap()["pv.kubernetes.io/provisioned-by"],
        "kubesim.io/hostpath"
    );
    assert!(t.cluster.nodes().volume_path(&pv_name).is_dir());
    eventually("pod running", || async {
        (pods.get("app").await.ok()?.status?.phase.as_deref() == Some("Running")).then_some(())
    })
    .await;
    t.cluster.stop().await;
}
