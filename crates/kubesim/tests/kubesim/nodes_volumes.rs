//! Scheduling with volumes and the PV controller against a running kubesim: delayed binding,
//! allowedTopologies, claimRef pre-binding, reclaim policies, Block volumes, selectors.

use crate::nodes_support;

use k8s_openapi::api::core::v1::{Event, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
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
    // Without a consumer the claim waits (the PV controller says so in an event).
    let events: Api<Event> = Api::namespaced(t.client.clone(), "default");
    eventually("WaitForFirstConsumer event", || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("WaitForFirstConsumer"))
    })
    .await;
    let waiting = claims.get("data").await.unwrap();
    assert_eq!(waiting.status.unwrap().phase.as_deref(), Some("Pending"));
    assert!(
        !waiting
            .metadata
            .annotations
            .unwrap_or_default()
            .contains_key(SELECTED_NODE)
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
        "hostpath.kubesim.io"
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
        "hostpath.kubesim.io"
    );
    assert!(t.cluster.nodes().volume_path(&pv_name).is_dir());
    eventually("pod running", || async {
        (pods.get("app").await.ok()?.status?.phase.as_deref() == Some("Running")).then_some(())
    })
    .await;
    t.cluster.stop().await;
}

async fn bound_claim(claims: &Api<PersistentVolumeClaim>, name: &str) -> PersistentVolumeClaim {
    eventually(&format!("claim {name} bound"), || async {
        let c = claims.get(name).await.ok()?;
        (c.status.as_ref()?.phase.as_deref() == Some("Bound")).then_some(c)
    })
    .await
}

async fn pv_phase(pvs: &Api<PersistentVolume>, name: &str) -> Option<String> {
    pvs.get_opt(name).await.ok()??.status?.phase
}

#[tokio::test]
async fn immediate_claim_binds_without_consumer_and_reclaim_delete_removes_the_volume() {
    let t = start(2, 0).await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(t.client.clone(), "default");
    let pvs: Api<PersistentVolume> = Api::all(t.client.clone());
    create(&claims, &claim("fast", "64Mi", Some("immediate"))).await;
    let bound = bound_claim(&claims, "fast").await;
    let pv_name = bound.spec.unwrap().volume_name.unwrap();
    let dir = t.cluster.nodes().volume_path(&pv_name);
    assert!(dir.is_dir());
    let pv = pvs.get(&pv_name).await.unwrap();
    assert_eq!(
        pv.spec
            .as_ref()
            .unwrap()
            .persistent_volume_reclaim_policy
            .as_deref(),
        Some("Delete")
    );
    claims
        .delete("fast", &DeleteParams::default())
        .await
        .unwrap();
    eventually("PV deleted", || async {
        pvs.get_opt(&pv_name).await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(!dir.exists(), "the volume directory is removed with the PV");
    t.cluster.stop().await;
}

/// StorageObjectInUseProtection: a claim and its PV carry their protection finalizers; a
/// deleted claim stays while a pod names it, even a finished one, and goes with its PV once
/// the pod is deleted.
#[tokio::test]
async fn a_claim_is_kept_while_a_pod_names_it_even_a_finished_one() {
    let t = start(1, 0).await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(t.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(t.client.clone(), "default");
    let pvs: Api<PersistentVolume> = Api::all(t.client.clone());
    create(&claims, &claim("kept", "64Mi", Some("immediate"))).await;
    let bound = bound_claim(&claims, "kept").await;
    let pv_name = bound.spec.clone().unwrap().volume_name.unwrap();
    let finalizers = |f: Option<Vec<String>>| f.unwrap_or_default();
    assert_eq!(
        finalizers(bound.metadata.finalizers),
        ["kubernetes.io/pvc-protection"]
    );
    let pv = pvs.get(&pv_name).await.unwrap();
    assert_eq!(
        finalizers(pv.metadata.finalizers),
        ["kubernetes.io/pv-protection"]
    );

    create(&pods, &pod("done", &["kept"], Some(vec!["true"]))).await;
    eventually("pod succeeded", || async {
        (pods.get("done").await.ok()?.status?.phase.as_deref() == Some("Succeeded")).then_some(())
    })
    .await;
    claims
        .delete("kept", &DeleteParams::default())
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let held = claims.get("kept").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    assert_eq!(pv_phase(&pvs, &pv_name).await.as_deref(), Some("Bound"));

    pods.delete("done", &DeleteParams::default()).await.unwrap();
    eventually("claim gone", || async {
        claims.get_opt("kept").await.ok()?.is_none().then_some(())
    })
    .await;
    eventually("PV gone", || async {
        pvs.get_opt(&pv_name).await.ok()?.is_none().then_some(())
    })
    .await;
    t.cluster.stop().await;
}

#[tokio::test]
async fn retain_keeps_a_released_volume_and_claim_ref_rebinds_it_to_a_new_claim() {
    let t = start(2, 0).await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(t.client.clone(), "default");
    let pvs: Api<PersistentVolume> = Api::all(t.client.clone());
    create(&claims, &claim("restore", "128Mi", Some("immediate"))).await;
    let bound = bound_claim(&claims, "restore").await;
    let old_uid = bound.metadata.uid.clone().unwrap();
    let pv_name = bound.spec.unwrap().volume_name.unwrap();
    std::fs::write(
        t.cluster.nodes().volume_path(&pv_name).join("restored.txt"),
        b"data",
    )
    .unwrap();
    // Velero's rebind: Retain, delete the restore claim, point claimRef at the target claim.
    let retain = serde_json::json!({"spec": {"persistentVolumeReclaimPolicy": "Retain"}});
    pvs.patch(&pv_name, &PatchParams::default(), &Patch::Merge(&retain))
        .await
        .unwrap();
    claims
        .delete("restore", &DeleteParams::default())
        .await
        .unwrap();
    eventually("PV released", || async {
        (pv_phase(&pvs, &pv_name).await? == "Released").then_some(())
    })
    .await;
    let released = pvs.get(&pv_name).await.unwrap();
    let claim_ref = released.spec.as_ref().unwrap().claim_ref.clone().unwrap();
    assert_eq!(
        claim_ref.uid.as_deref(),
        Some(old_uid.as_str()),
        "a Released PV keeps its claimRef with uid"
    );
    assert!(
        t.cluster
            .nodes()
            .volume_path(&pv_name)
            .join("restored.txt")
            .is_file()
    );

    let mut target = claim("target", "128Mi", Some("standard"));
    target.spec.as_mut().unwrap().selector = Some(LabelSelector {
        match_labels: Some(
            [(
                "velero.io/dynamic-pv-restore".to_string(),
                "target".to_string(),
            )]
            .into(),
        ),
        match_expressions: None,
    });
    create(&claims, &target).await;
    let rebind = serde_json::json!({
        "metadata": {"labels": {"velero.io/dynamic-pv-restore": "target"}},
        "spec": {"claimRef": {"namespace": "default", "name": "target", "uid": null, "resourceVersion": null}}
    });
    pvs.patch(&pv_name, &PatchParams::default(), &Patch::Merge(&rebind))
        .await
        .unwrap();
    let rebound = bound_claim(&claims, "target").await;
    assert_eq!(
        rebound.spec.as_ref().unwrap().volume_name.as_deref(),
        Some(pv_name.as_str())
    );
    let pv = pvs.get(&pv_name).await.unwrap();
    assert_eq!(pv.status.unwrap().phase.as_deref(), Some("Bound"));
    assert_eq!(
        pv.spec.unwrap().claim_ref.unwrap().uid,
        rebound.metadata.uid
    );
    assert!(
        t.cluster
            .nodes()
            .volume_path(&pv_name)
            .join("restored.txt")
            .is_file()
    );
    t.cluster.stop().await;
}

#[tokio::test]
async fn claim_with_selector_gets_selected_node_but_is_never_provisioned() {
    let t = start(2, 0).await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(t.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(t.client.clone(), "default");
    let pvs: Api<PersistentVolume> = Api::all(t.client.clone());
    let events: Api<Event> = Api::namespaced(t.client.clone(), "default");
    let mut c = claim("restored", "1Gi", Some("standard"));
    c.spec.as_mut().unwrap().selector = Some(LabelSelector {
        match_labels: Some([("velero.io/restore-name".to_string(), "r1".to_string())].into()),
        match_expressions: None,
    });
    create(&claims, &c).await;
    create(
        &pods,
        &pod("workload", &["restored"], Some(vec!["sleep", "300"])),
    )
    .await;
    let node = eventually("selected-node set", || async {
        claims
            .get("restored")
            .await
            .ok()?
            .metadata
            .annotations?
            .get(SELECTED_NODE)
            .cloned()
    })
    .await;
    assert!(node.starts_with("node-"));
    let event = eventually("ProvisioningFailed event", || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("ProvisioningFailed"))
    })
    .await;
    assert!(
        event
            .message
            .unwrap()
            .contains("claim Selector is not supported")
    );
    assert_eq!(event.involved_object.name.as_deref(), Some("restored"));
    assert!(
        pvs.list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "no PV is provisioned"
    );
    let waiting = pods.get("workload").await.unwrap();
    assert_eq!(
        waiting.status.unwrap().phase.as_deref(),
        Some("Pending"),
        "the pod waits for its volume"
    );
    t.cluster.stop().await;
}

#[tokio::test]
async fn block_claim_gets_a_sparse_file_of_the_requested_size() {
    let t = start(1, 0).await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(t.client.clone(), "default");
    let mut c = claim("raw", "1Gi", Some("immediate"));
    c.spec.as_mut().unwrap().volume_mode = Some("Block".into());
    create(&claims, &c).await;
    let bound = bound_claim(&claims, "raw").await;
    let pv_name = bound.spec.unwrap().volume_name.unwrap();
    let file = t.cluster.nodes().volume_path(&pv_name);
    let meta = std::fs::metadata(&file).unwrap();
    assert!(meta.is_file());
    assert_eq!(meta.len(), 1 << 30);
    use std::os::unix::fs::MetadataExt;
    assert!(meta.blocks() * 512 < 1 << 20, "the file is sparse");
    let pvs: Api<PersistentVolume> = Api::all(t.client.clone());
    assert_eq!(
        pvs.get(&pv_name)
            .await
            .unwrap()
            .spec
            .unwrap()
            .volume_mode
            .as_deref(),
        Some("Block")
    );
    t.cluster.stop().await;
}
