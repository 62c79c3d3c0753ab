//! What exists when the cluster starts: the nodes (labelled like real kubelets label
//! themselves) and the two storage classes served by kubesim's provisioner.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Node, NodeCondition, NodeSpec, NodeStatus, NodeSystemInfo, Taint,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};

/// The provisioner name of kubesim's storage classes; any StorageClass naming it is served.
pub const PROVISIONER: &str = "hostpath.kubesim.io";
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
pub const DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";
pub const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";

/// `node-1` … `node-N`.
pub fn node_name(index: usize) -> String {
    format!("node-{}", index + 1)
}

/// Zones are assigned round-robin: node-1 → zone-1, node-2 → zone-2, …
pub fn zone_of(index: usize, zones: usize) -> Option<String> {
    (zones > 0).then(|| format!("zone-{}", index % zones + 1))
}

fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
        .collect()
}

/// A Ready node as its kubelet would register it.
pub fn node_object(index: usize, zones: usize) -> Node {
    let name = node_name(index);
    let mut labels = BTreeMap::from([
        (HOSTNAME_LABEL.to_string(), name.clone()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), arch()),
        ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
    ]);
    if let Some(zone) = zone_of(index, zones) {
        labels.insert(ZONE_LABEL.to_string(), zone);
    }
    let resources = quantities(&[
        ("cpu", "8"),
        ("memory", "32Gi"),
        ("pods", "110"),
        ("ephemeral-storage", "100Gi"),
    ]);
    Node {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: Some(labels),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            pod_cidr: Some(format!("10.244.{}.0/24", index % 256)),
            ..Default::default()
        }),
        status: Some(NodeStatus {
            capacity: Some(resources.clone()),
            allocatable: Some(resources),
            conditions: Some(vec![ready_condition(true)]),
            addresses: Some(vec![
                k8s_openapi::api::core::v1::NodeAddress {
                    type_: "InternalIP".into(),
                    address: node_ip(index),
                },
                k8s_openapi::api::core::v1::NodeAddress {
                    type_: "Hostname".into(),
                    address: name,
                },
            ]),
            node_info: Some(NodeSystemInfo {
                architecture: arch(),
                operating_system: "linux".into(),
                kubelet_version: "v1.33.0-kubesim".into(),
                kube_proxy_version: "v1.33.0-kubesim".into(),
                container_runtime_version: "kubesim://0.1".into(),
                os_image: "kubesim".into(),
                kernel_version: "kubesim".into(),
                boot_id: String::new(),
                machine_id: String::new(),
                system_uuid: String::new(),
                ..Default::default()
            }),
            phase: None,
            ..Default::default()
        }),
    }
}

/// The Go-style architecture name of this machine, as a kubelet reports it.
pub fn arch() -> String {
    match std::env::consts::ARCH {
        "x86_64" => "amd64".into(),
        "aarch64" => "arm64".into(),
        other => other.into(),
    }
}

/// 10.0.x.y, unique for up to 65,000 nodes.
pub fn node_ip(index: usize) -> String {
    let n = index + 1;
    format!("10.0.{}.{}", n / 256, n % 256)
}

pub fn ready_condition(ready: bool) -> NodeCondition {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    NodeCondition {
        type_: "Ready".into(),
        status: if ready { "True" } else { "False" }.into(),
        reason: Some(
            if ready {
                "KubeletReady"
            } else {
                "KubeletNotReady"
            }
            .into(),
        ),
        message: Some(
            if ready {
                "kubelet is posting ready status"
            } else {
                "node was marked NotReady by the test"
            }
            .into(),
        ),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: Some(now),
    }
}

pub fn storage_class(name: &str, binding_mode: &str, default: bool) -> StorageClass {
    let annotations = default
        .then(|| BTreeMap::from([(DEFAULT_CLASS_ANNOTATION.to_string(), "true".to_string())]));
    StorageClass {
        metadata: ObjectMeta {
            name: Some(name.into()),
            annotations,
            ..Default::default()
        },
        provisioner: PROVISIONER.into(),
        reclaim_policy: Some("Delete".into()),
        volume_binding_mode: Some(binding_mode.into()),
        allow_volume_expansion: Some(false),
        ..Default::default()
    }
}

/// Creates (or leaves in place) the nodes and the `standard`/`immediate` classes.
pub async fn register(client: &kube::Client, nodes: usize, zones: usize) -> kube::Result<()> {
    let node_api: Api<Node> = Api::all(client.clone());
    // Registration is I/O bound; a few at a time keeps 1,000 nodes quick without flooding.
    use futures::StreamExt;
    let results: Vec<kube::Result<()>> = futures::stream::iter(0..nodes)
        .map(|index| {
            let node_api = node_api.clone();
            async move {
                let node = node_object(index, zones);
                match node_api.create(&PostParams::default(), &node).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 409 => {}
                    Err(e) => return Err(e),
                }
                // The API server may drop status on create (status is a subresource).
                let status = serde_json::json!({ "status": node.status });
                node_api
                    .patch_status(
                        &node_name(index),
                        &PatchParams::default(),
                        &Patch::Merge(&status),
                    )
                    .await?;
                Ok(())
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    results.into_iter().collect::<kube::Result<Vec<()>>>()?;
    let classes: Api<StorageClass> = Api::all(client.clone());
    for class in [
        storage_class("standard", "WaitForFirstConsumer", true),
        storage_class("immediate", "Immediate", false),
    ] {
        match classes.create(&PostParams::default(), &class).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The CSIDriver object of kubesim's driver: no attach step (nothing would acknowledge a
/// VolumeAttachment) and no pod info on mount. Only on a real control plane; kubesim's API
/// server does not serve storage.k8s.io CSIDrivers.
pub async fn register_csi_driver(client: &kube::Client) -> kube::Result<()> {
    use k8s_openapi::api::storage::v1::CSIDriver;
    let driver: CSIDriver = serde_json::from_value(serde_json::json!({
        "metadata": {"name": PROVISIONER},
        "spec": {
            "attachRequired": false,
            "podInfoOnMount": false,
            "volumeLifecycleModes": ["Persistent"],
        },
    }))
    .expect("a CSIDriver from literal JSON");
    match Api::<CSIDriver>::all(client.clone())
        .create(&PostParams::default(), &driver)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Ready=True/False plus the not-ready NoSchedule taint the node lifecycle controller adds.
pub async fn set_node_ready(client: &kube::Client, node: &str, ready: bool) -> kube::Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    let current = api.get(node).await?;
    let mut conditions: Vec<NodeCondition> = current
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.type_ != "Ready")
        .collect();
    conditions.push(ready_condition(ready));
    let status = serde_json::json!({ "status": { "conditions": conditions } });
    api.patch_status(node, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    // The condition goes first: the real node lifecycle controller reconciles the not-ready
    // taint with the Ready condition, and a taint seen beside a stale Ready=True may be
    // taken off again, leaving a NotReady node schedulable for a while. The taints are read
    // again: the lifecycle controller may have added its own meanwhile.
    let current = api.get(node).await?;
    let mut taints: Vec<Taint> = current
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t.key != NOT_READY_TAINT)
        .collect();
    if !ready {
        taints.push(Taint {
            key: NOT_READY_TAINT.into(),
            effect: "NoSchedule".into(),
            value: None,
            time_added: Some(Time(k8s_openapi::jiff::Timestamp::now())),
        });
    }
    let spec = serde_json::json!({ "spec": { "taints": taints } });
    api.patch(node, &PatchParams::default(), &Patch::Merge(&spec))
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_are_named_and_zoned_round_robin() {
        let node = node_object(4, 3);
        let labels = node.metadata.labels.unwrap();
        assert_eq!(node.metadata.name.as_deref(), Some("node-5"));
        assert_eq!(labels[HOSTNAME_LABEL], "node-5");
        assert_eq!(labels["kubernetes.io/os"], "linux");
        assert_eq!(labels[ZONE_LABEL], "zone-2");
        assert!(
            !node_object(0, 0)
                .metadata
                .labels
                .unwrap()
                .contains_key(ZONE_LABEL)
        );
    }

    #[test]
    fn standard_class_is_default_and_waits_for_consumer() {
        let class = storage_class("standard", "WaitForFirstConsumer", true);
        assert_eq!(
            class.metadata.annotations.unwrap()[DEFAULT_CLASS_ANNOTATION],
            "true"
        );
        assert_eq!(
            class.volume_binding_mode.as_deref(),
            Some("WaitForFirstConsumer")
        );
        assert_eq!(class.reclaim_policy.as_deref(), Some("Delete"));
    }
}
