//! How the controller runs: what `ferry controller`'s flags and the embedding tests set.

use std::net::SocketAddr;
use std::time::Duration;

/// How the controller runs.
#[derive(Clone)]
pub struct ControllerOptions {
    pub client: kube::Client,
    /// Namespace of the DataDownloads, restore PVCs and restore pods.
    pub namespace: String,
    /// The node-agent ConfigMap in `namespace` (missing: startup error).
    pub node_agent_configmap: String,
    /// `spec.datamover` value this controller handles.
    pub data_mover_name: String,
    /// Image of the restore pods (ferry's own).
    pub image: String,
    /// Name of this replica (lease holder, `acceptedByNode`).
    pub identity: String,
    pub metrics_address: Option<SocketAddr>,
    /// A pass also runs this long after the last one when nothing changed: a safety net for
    /// a missed watch event, and what makes time-based steps (timeouts) fire.
    pub resync_interval: Duration,
    /// How long a restore pod may take from its creation until it runs (and how long no
    /// node at all may be eligible).
    pub expose_timeout: Duration,
    /// How long an accepted restore may wait before it is exposed: for its target PVC to be
    /// created and, with WaitForFirstConsumer, consumed (Velero's `--data-mover-prepare-timeout`,
    /// 30 minutes by default).
    pub prepare_timeout: Duration,
    pub lease_name: String,
    pub lease_duration: Duration,
    pub service_account: Option<String>,
    /// Log filter given to the data mover pods.
    pub data_mover_log: Option<String>,
    /// How long after a failed forget pod (a deleted backup's snapshot) the next one starts.
    pub forget_retry: Duration,
}

impl ControllerOptions {
    /// Defaults for everything but the client, namespace and ConfigMap.
    pub fn new(client: kube::Client, namespace: &str, node_agent_configmap: &str) -> Self {
        Self {
            client,
            namespace: namespace.to_string(),
            node_agent_configmap: node_agent_configmap.to_string(),
            data_mover_name: "ferry".to_string(),
            image: crate::install::DEFAULT_IMAGE.to_string(),
            identity: std::env::var("POD_NAME")
                .or_else(|_| std::env::var("HOSTNAME"))
                .unwrap_or_else(|_| format!("ferry-controller-{}", std::process::id())),
            metrics_address: None,
            resync_interval: Duration::from_secs(10),
            expose_timeout: Duration::from_secs(600),
            prepare_timeout: Duration::from_secs(30 * 60),
            lease_name: "ferry-controller".to_string(),
            lease_duration: Duration::from_secs(15),
            service_account: None,
            data_mover_log: None,
            forget_retry: crate::backup_deletion::FORGET_RETRY,
        }
    }
}
