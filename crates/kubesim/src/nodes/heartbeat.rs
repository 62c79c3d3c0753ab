//! Node heartbeats for a real control plane: a kubelet renews its node's Lease in
//! `kube-node-lease` every 10 s, and the node lifecycle controller marks a node whose Lease
//! and status go stale for `--node-monitor-grace-period` Unknown and taints it. kubesim's
//! own API server has no lifecycle controller and needs none of this.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use tokio_util::sync::CancellationToken;

pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
/// A kubelet's defaults: renew every 10 s a Lease that lasts 40 s.
const RENEW_INTERVAL: Duration = Duration::from_secs(10);
const LEASE_SECONDS: i32 = 40;

/// The Lease of `node`, held by it, owned by the Node object (so it goes with the node).
fn lease_object(node: &Node) -> Lease {
    let name = node.metadata.name.clone().unwrap_or_default();
    serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": name,
            "namespace": NODE_LEASE_NAMESPACE,
            "ownerReferences": [{
                "apiVersion": "v1", "kind": "Node", "name": name,
                "uid": node.metadata.uid,
            }],
        },
        "spec": {
            "holderIdentity": name,
            "leaseDurationSeconds": LEASE_SECONDS,
        },
    }))
    .expect("a Lease from literal JSON")
}

async fn renew(client: &kube::Client, node_name: &str) -> kube::Result<()> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), NODE_LEASE_NAMESPACE);
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    let patch = serde_json::json!({"spec": {"renewTime": now, "holderIdentity": node_name}});
    match leases
        .patch(node_name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => {
            let nodes: Api<Node> = Api::all(client.clone());
            let node = nodes.get(node_name).await?;
            let mut lease = lease_object(&node);
            lease.spec.get_or_insert_with(Default::default).renew_time = Some(now);
            match leases.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// Renews every node's Lease until stopped.
pub async fn run(client: kube::Client, nodes: Vec<String>, stop: CancellationToken) {
    loop {
        for node in &nodes {
            if let Err(error) = renew(&client, node).await {
                tracing::debug!(%error, node, "kubesim kubelet: lease renewal failed");
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(RENEW_INTERVAL) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_lease_is_held_by_and_owned_by_its_node() {
        let mut node = Node::default();
        node.metadata.name = Some("node-1".into());
        node.metadata.uid = Some("u-1".into());
        let lease = lease_object(&node);
        assert_eq!(
            lease.metadata.namespace.as_deref(),
            Some(NODE_LEASE_NAMESPACE)
        );
        let spec = lease.spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("node-1"));
        assert_eq!(spec.lease_duration_seconds, Some(40));
        let owner = &lease.metadata.owner_references.unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("Node", "u-1"));
    }
}
