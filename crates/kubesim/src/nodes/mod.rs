//! The node side of the simulated cluster: nodes and storage classes at start, the
//! scheduler, the volume provisioner/binder (PV controller) and the kubelets. They talk to
//! the API server only through a `kube::Client`, as real components do, and decide over
//! reflector caches ([`cache::ClusterCache`]). The decisions are pure functions
//! ([`scheduling`], [`volume_binding`]) tested without a server. See docs/kubesim-nodes.md.

pub mod bootstrap;
pub mod cache;
pub mod container_spec;
pub mod events;
pub mod heartbeat;
pub mod kubelet;
pub mod matching;
pub mod pod_access;
pub mod pod_runtime;
pub mod pod_status;
pub mod quantity;
pub mod scheduler;
pub mod scheduling;
pub mod snapshot_controller;
pub mod snapshot_crds;
pub mod snapshot_data;
pub mod snapshot_types;
pub mod snapshot_watch;
pub mod snapshotter;
pub mod statefulsets;
pub mod volume_binding;
pub mod volume_controller;
pub mod volume_data;
pub mod volume_matching;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use cache::ClusterCache;
pub use pod_access::PodAccess;

#[derive(Debug, Clone, Default)]
pub struct NodesConfig {
    pub nodes: usize,
    pub zones: usize,
    /// Where PV directories and pod logs live.
    pub data_dir: PathBuf,
    /// Image name (without tag) → local binary that a container of that image runs.
    pub image_binaries: BTreeMap<String, PathBuf>,
    /// Whether kubesim also schedules and binds volumes (its own API server) or leaves that
    /// to a real kube-scheduler and kube-controller-manager.
    pub mode: NodesMode,
    /// How pods reach the API server.
    pub pod_access: PodAccess,
}

/// What the node side does besides being nodes (kubelets and a CSI-style provisioner).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum NodesMode {
    /// Beside kubesim's API server: kubesim is also the scheduler and the PV controller.
    #[default]
    Simulated,
    /// Attached to a real control plane: nodes renew their Leases, the real scheduler
    /// places pods and the real PV controller binds; kubesim provisions and deletes its
    /// volumes as an external provisioner.
    Attached,
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
        let attached = config.mode == NodesMode::Attached;
        bootstrap::register(&client, config.nodes, config.zones)
            .await
            .context("cannot register kubesim's nodes and storage classes")?;
        if attached {
            bootstrap::register_csi_driver(&client)
                .await
                .context("cannot register kubesim's CSIDriver")?;
        } else {
            // On a real control plane they come with the snapshot-controller.
            snapshot_crds::install(&client)
                .await
                .context("cannot install the VolumeSnapshot CRDs")?;
        }
        let cache = Arc::new(ClusterCache::start(&client).await?);
        let stop = CancellationToken::new();
        let node_names: Vec<String> = (0..config.nodes).map(bootstrap::node_name).collect();
        let role = if attached {
            volume_controller::VolumeRole::Provisioner
        } else {
            volume_controller::VolumeRole::ControllerAndProvisioner
        };
        let volumes =
            volume_controller::VolumeController::new(client.clone(), &config.data_dir, role);
        let kubelets = kubelet::Kubelets::new(
            client.clone(),
            config.data_dir.clone(),
            config.image_binaries.clone(),
            BTreeMap::new(),
            config.pod_access.clone(),
            node_names.iter().cloned().collect::<HashSet<_>>(),
        );
        let snapshots = Arc::new(snapshot_watch::SnapshotWatch::start(&client));
        let snapshotter = snapshotter::Snapshotter::new(client.clone(), &config.data_dir);
        let mut tasks = vec![
            tokio::spawn(volumes.run(cache.clone(), stop.clone())),
            tokio::spawn(kubelets.run(cache.clone(), stop.clone())),
            tokio::spawn(snapshotter.run(snapshots.clone(), cache.clone(), stop.clone())),
        ];
        if attached {
            tasks.push(tokio::spawn(heartbeat::run(
                client.clone(),
                node_names,
                stop.clone(),
            )));
        } else {
            let scheduler = scheduler::Scheduler::new(client.clone());
            tasks.push(tokio::spawn(scheduler.run(cache.clone(), stop.clone())));
            tasks.push(tokio::spawn(statefulsets::run(
                client.clone(),
                stop.clone(),
            )));
            let snapshot_controller = snapshot_controller::SnapshotController::new(client.clone());
            tasks.push(tokio::spawn(snapshot_controller.run(
                snapshots.clone(),
                cache.clone(),
                stop.clone(),
            )));
        }
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
        volume_data::volume_path(&self.config.data_dir, pv_name)
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
