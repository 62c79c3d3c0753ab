//! The scheduler against a running kubesim: allowedTopologies, topology spread, NotReady
//! nodes and the report of an unschedulable pod.

use crate::nodes_support;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Event, PersistentVolume, PersistentVolumeClaim, Pod, TopologySelectorLabelRequirement,
    TopologySelectorTerm, TopologySpreadConstraint,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::Api;
use nodes_support::*;

async fn node_of(pods: &Api<Pod>, name: &str) -> String {
    eventually(&format!("pod {name} scheduled"), || async {
        pods.get(name).await.ok()?.spec?.node_name
    })
    .await
}

#[tokio::test]
async fn allowed_topologies_restrict_where_delayed_volumes_go() {
    let t = start(4, 2).await;
    let classes: Api<StorageClass> = Api::all(t.client.clone());
    create(
        &classes,
        &StorageClass {
            metadata: ObjectMeta {
                name: Some("zone-two".into()),
                ..Default::default()
            },
            provisioner: "hostpath.kubesim.io".into(),
            volume_binding_mode: Some("WaitForFirstConsumer".into()),
            reclaim_policy: Some("Delete".into()),
            allowed_topologies: Some(vec![TopologySelectorTerm {
                match_label_expressions: Some(vec![TopologySelectorLabelRequirement {
                    key: "topology.kubernetes.io/zone".into(),
                    values: vec!["zone-2".into()],
                }]),
            }]),
            ..Default::default()
        },
    )
    .await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(t.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(t.client.clone(), "default");
    let pvs: Api<PersistentVolume> = Api::all(t.client.clone());
    for i in 0..4 {
        create(&claims, &claim(&format!("z{i}"), "10Mi", Some("zone-two"))).await;
        create(
            &pods,
            &pod(
                &format!("p{i}"),
                &[&format!("z{i}")],
                Some(vec!["sleep", "300"]),
            ),
        )
        .await;
    }
    for i in 0..4 {
        let node = node_of(&pods, &format!("p{i}")).await;
        // zone-2 holds node-2 and node-4 (round-robin).
        assert!(node == "node-2" || node == "node-4", "p{i} went to {node}");
        let c = claims.get(&format!("z{i}")).await.unwrap();
        let pv = pvs
            .get(c.spec.unwrap().volume_name.as_deref().unwrap())
            .await
            .unwrap();
        assert_eq!(
            pv.metadata.labels.unwrap()["topology.kubernetes.io/zone"],
            "zone-2"
        );
    }
    t.cluster.stop().await;
}

#[tokio::test]
async fn topology_spread_puts_two_pods_on_each_of_four_nodes() {
    let t = start(4, 0).await;
    let pods: Api<Pod> = Api::namespaced(t.client.clone(), "default");
    for i in 0..8 {
        let mut p = pod(&format!("s{i}"), &[], Some(vec!["sleep", "300"]));
        p.spec.as_mut().unwrap().topology_spread_constraints =
            Some(vec![TopologySpreadConstraint {
                max_skew: 1,
                topology_key: "kubernetes.io/hostname".into(),
                when_unsatisfiable: "DoNotSchedule".into(),
                label_selector: Some(LabelSelector {
                    match_labels: Some([("app".to_string(), "test".to_string())].into()),
                    match_expressions: None,
                }),
                ..Default::default()
            }]);
        create(&pods, &p).await;
    }
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..8 {
        *per_node
            .entry(node_of(&pods, &format!("s{i}")).await)
            .or_default() += 1;
    }
    assert_eq!(per_node.len(), 4, "{per_node:?}");
    assert!(per_node.values().all(|&n| n == 2), "{per_node:?}");
    t.cluster.stop().await;
}

#[tokio::test]
async fn unschedulable_pod_gets_condition_and_event_and_not_ready_nodes_are_avoided() {
    let t = start(4, 0).await;
    t.cluster
        .nodes()
        .set_node_ready("node-1", false)
        .await
        .unwrap();
    t.cluster
        .nodes()
        .set_node_ready("node-2", false)
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(t.client.clone(), "default");
    let events: Api<Event> = Api::namespaced(t.client.clone(), "default");
    let mut nowhere = pod("nowhere", &[], Some(vec!["sleep", "300"]));
    nowhere.spec.as_mut().unwrap().node_selector =
        Some([("disk".to_string(), "ssd".to_string())].into());
    create(&pods, &nowhere).await;
    // The scheduler retries as it learns about the nodes; wait for the settled verdict.
    let expected = "0/4 nodes are available: 2 node(s) didn't match Pod's node affinity/selector, 2 node(s) had untolerated taint(s). no new claims to deallocate, preemption: 0/4 nodes are available: 4 Preemption is not helpful for scheduling.";
    let condition = eventually("PodScheduled=False with both reasons", || async {
        let p = pods.get("nowhere").await.ok()?;
        p.status?.conditions?.into_iter().find(|c| {
            c.type_ == "PodScheduled"
                && c.status == "False"
                && c.message.as_deref() == Some(expected)
        })
    })
    .await;
    assert_eq!(condition.reason.as_deref(), Some("Unschedulable"));
    let event = eventually("FailedScheduling event", || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items.into_iter().find(|e| {
            e.reason.as_deref() == Some("FailedScheduling")
                && e.message.as_deref() == Some(expected)
        })
    })
    .await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert_eq!(event.involved_object.name.as_deref(), Some("nowhere"));
    assert!(
        pods.get("nowhere")
            .await
            .unwrap()
            .spec
            .unwrap()
            .node_name
            .is_none()
    );
    // Ordinary pods only land on the Ready nodes.
    for i in 0..6 {
        create(
            &pods,
            &pod(&format!("r{i}"), &[], Some(vec!["sleep", "300"])),
        )
        .await;
    }
    for i in 0..6 {
        let node = node_of(&pods, &format!("r{i}")).await;
        assert!(node == "node-3" || node == "node-4", "{node}");
    }
    // Back to Ready: the node takes pods again and no longer carries the taint.
    t.cluster
        .nodes()
        .set_node_ready("node-1", true)
        .await
        .unwrap();
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(t.client.clone());
    let node1 = nodes.get("node-1").await.unwrap();
    assert!(node1.spec.unwrap().taints.unwrap_or_default().is_empty());
    t.cluster.stop().await;
}
