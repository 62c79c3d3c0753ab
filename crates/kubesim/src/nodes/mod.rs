//! The node side of the simulated cluster: nodes and storage classes at start, the
//! scheduler, the volume provisioner/binder (PV controller) and the kubelets. They talk to
//! the API server only through a `kube::Client`, as real components do, and decide over
//! reflector caches ([`cache::ClusterCache`]). The decisions are pure functions
//! ([`scheduling`], [`volume_binding`]) tested without a server. See docs/kubesim-nodes.md.

pub mod bootstrap;
pub mod cache;
pub mod container_spec;
pub mod events;
pub mod kubelet;
pub mod matching;
pub mod pod_runtime;
pub mod pod_status;
pub mod quantity;
pub mod scheduler;
pub mod scheduling;
pub mod volume_binding;
pub mod volume_controller;
pub mod volume_matching;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use cache::ClusterCache;

#[derive(Debug, Clone, Default)]
pub struct NodesConfig {
    pub nodes: usize,
    pub zones: usize,
    /// Where PV directories and pod logs live.
    pub data_dir: PathBuf,
    /// Image name (without tag) → local binary that a container of that image runs.
    pub image_binaries: BTreeMap<String, PathBuf>,
}

/// The running node components; `stop` ends them and the pods' processes (dropping
/// them cancels the components and kills the processes without waiting).
pub struct NodeComponents {
    client: kube::Client,
    config: NodesConfig,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    cache: Arc<ClusterCache>,
}

impl NodeComponents {
    /// Registers the nodes and the storage classes, then starts the scheduler, the volume
    /// provisioner/binder and the kubelets.
    pub async fn start(
        client: kube::Client,
        config: NodesConfig,
    ) -> anyhow::Result<NodeComponents> {
        std::fs::create_dir_all(config.data_dir.join("volumes")).with_context(|| {
            format!(
                "cannot create {}",
                config.data_dir.join("volumes").display()
            )
        })?;
        std::fs::create_dir_all(config.data_dir.join("pods"))
            .with_context(|| format!("cannot create {}", config.data_dir.join("pods").display()))?;
        bootstrap::register(&client, config.nodes, config.zones)
            .await
            .context("cannot register kubesim's nodes and storage classes")?;
        let cache = Arc::new(ClusterCache::start(&client).await?);
        let stop = CancellationToken::new();
        let node_names: HashSet<String> = (0..config.nodes).map(bootstrap::node_name).collect();
        // Pods reach the API server through the kubeconfig the cluster writes into the data
        // dir (kubesim has no in-cluster service account tokens).
        let mut pod_env = BTreeMap::new();
        pod_env.insert(
            "KUBECONFIG".to_string(),
            config
                .data_dir
                .join("kubeconfig")
                .to_string_lossy()
                .into_owned(),
        );
        let scheduler = scheduler::Scheduler::new(client.clone());
        let volumes = volume_controller::VolumeController::new(client.clone(), &config.data_dir);
        let kubelets = kubelet::Kubelets::new(
            client.clone(),
            config.data_dir.clone(),
            config.image_binaries.clone(),
            pod_env,
            node_names,
        );
        let tasks = vec![
            tokio::spawn(scheduler.run(cache.clone(), stop.clone())),
            tokio::spawn(volumes.run(cache.clone(), stop.clone())),
            tokio::spawn(kubelets.run(cache.clone(), stop.clone())),
        ];
        Ok(NodeComponents {
            client,
            config,
            stop,
            tasks,
            cache,
        })
    }

    /// Marks a node Ready or NotReady (condition Ready and the
    /// `node.kubernetes.io/not-ready:NoSchedule` taint, as the node lifecycle controller).
    pub async fn set_node_ready(&self, node: &str, ready: bool) -> anyhow::Result<()> {
        bootstrap::set_node_ready(&self.client, node, ready)
            .await
            .with_context(|| {
                format!(
                    "cannot mark node {node} {}",
                    if ready { "Ready" } else { "NotReady" }
                )
            })
    }

    /// `DATA_DIR/volumes/<pv-name>`: a provisioned PV's directory (or file, for Block).
    pub fn volume_path(&self, pv_name: &str) -> PathBuf {
        volume_controller::volume_path(&self.config.data_dir, pv_name)
    }

    /// `DATA_DIR/pods/<namespace>_<name>`: a pod's logs and container roots.
    pub fn pod_dir(&self, namespace: &str, name: &str) -> PathBuf {
        kubelet::pod_dir(&self.config.data_dir, namespace, name)
    }

    pub fn config(&self) -> &NodesConfig {
        &self.config
    }

    /// Stops every component and every pod process.
    pub async fn stop(mut self) {
        self.stop.cancel();
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
        self.cache.stop();
    }
}

impl Drop for NodeComponents {
    fn drop(&mut self) {
        self.stop.cancel();
        for task in &self.tasks {
            task.abort();
        }
    }
}
