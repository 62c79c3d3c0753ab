//! The node side of the simulated cluster: nodes and storage classes at start, the scheduler,
//! the volume provisioner/binder and the kubelets. They talk to the API server only through a
//! `kube::Client`, as real components do. (Not built yet: this is the contract.)

pub mod bootstrap;
pub mod cache;
pub mod container_spec;
pub mod events;
pub mod matching;
pub mod quantity;
pub mod scheduler;
pub mod scheduling;
pub mod volume_binding;
pub mod volume_controller;
pub mod volume_matching;

use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Clone, Default)]
pub struct NodesConfig {
    pub nodes: usize,
    pub zones: usize,
    /// Where PV directories and pod logs live.
    pub data_dir: PathBuf,
    /// Image name (without tag) → local binary that a container of that image runs.
    pub image_binaries: BTreeMap<String, PathBuf>,
}

/// The running node components; dropping or `stop` ends them and the pods' processes.
pub struct NodeComponents {}

impl NodeComponents {
    /// Registers the nodes and the storage classes, then starts the scheduler, the volume
    /// provisioner/binder and the kubelets.
    pub async fn start(
        _client: kube::Client,
        _config: NodesConfig,
    ) -> anyhow::Result<NodeComponents> {
        Ok(NodeComponents {})
    }

    /// Marks a node Ready or NotReady.
    pub async fn set_node_ready(&self, _node: &str, _ready: bool) -> anyhow::Result<()> {
        Ok(())
    }

    /// Stops every component and every pod process.
    pub async fn stop(self) {}
}
