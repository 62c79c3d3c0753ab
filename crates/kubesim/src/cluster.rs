//! A whole simulated cluster: the API server plus the node components (nodes, storage
//! classes, scheduler, volume provisioner/binder, kubelets) as its clients.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::nodes::{NodeComponents, NodesConfig};
use crate::server::ApiServer;

#[derive(Debug, Clone, Default)]
pub struct ClusterConfig {
    /// Nodes `node-1` … `node-N`.
    pub nodes: usize,
    /// Zones `zone-1` … `zone-Z`, assigned round-robin (0: no zone labels).
    pub zones: usize,
    /// PV directories, pod logs and the kubeconfig live here.
    pub data_dir: PathBuf,
    /// The API server's port on 127.0.0.1 (None: any free port).
    pub port: Option<u16>,
    /// Image name (without tag) → local binary that a container of that image runs.
    pub image_binaries: BTreeMap<String, PathBuf>,
}

pub struct Cluster {
    server: ApiServer,
    nodes: Option<NodeComponents>,
    client: kube::Client,
    kubeconfig: PathBuf,
}

impl Cluster {
    /// Starts the API server, then the node components, then writes
    /// `<data_dir>/kubeconfig`.
    pub async fn start(config: ClusterConfig) -> anyhow::Result<Cluster> {
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!(
                "cannot create the kubesim data dir {}",
                config.data_dir.display()
            )
        })?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, config.port.unwrap_or(0)));
        let server = ApiServer::start(addr).await?;
        let client = server.client()?;
        let nodes = NodeComponents::start(
            client.clone(),
            NodesConfig {
                nodes: config.nodes,
                zones: config.zones,
                data_dir: config.data_dir.clone(),
                image_binaries: config.image_binaries.clone(),
                ..Default::default()
            },
        )
        .await
        .context("cannot start kubesim's node components")?;
        let kubeconfig = config.data_dir.join("kubeconfig");
        server.write_kubeconfig(&kubeconfig)?;
        Ok(Cluster {
            server,
            nodes: Some(nodes),
            client,
            kubeconfig,
        })
    }

    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn nodes(&self) -> &NodeComponents {
        self.nodes.as_ref().expect("node components run until stop")
    }

    pub fn api_server(&self) -> &ApiServer {
        &self.server
    }

    /// Stops the node components (and every pod process), then the API server.
    pub async fn stop(mut self) {
        if let Some(nodes) = self.nodes.take() {
            nodes.stop().await;
        }
        self.server.stop().await;
    }
}
