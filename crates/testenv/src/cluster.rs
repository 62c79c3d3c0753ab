//! A test cluster of either kind behind one type: kubesim (its own API server, scheduler
//! and PV controller) or the real control plane (one of the run's shared ones, see
//! [`crate::shared`]), both with kubesim's nodes: kubelets that run pods' images as local
//! binaries and the `hostpath.kubesim.io` CSI-style provisioner.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;
use kube::api::PostParams;
use kubesim::nodes::{NodeComponents, NodesConfig, NodesMode, PodAccess};

use crate::audit::{AuditLog, Requests};
use crate::control_plane::audit_log_path;
use crate::kubeconfig::{self, Credentials};
use crate::shared::{self, SharedControlPlane};

/// Which cluster a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// kubesim's simulated API server, scheduler and PV controller: fast, in-process.
    Kubesim,
    /// kube-apiserver, etcd, kube-scheduler, kube-controller-manager and the
    /// snapshot-controller, built from the pinned Go modules.
    Real,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Kubesim => "kubesim",
            Backend::Real => "real",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ClusterConfig {
    /// Nodes `node-1` … `node-N`.
    pub nodes: usize,
    /// Zones `zone-1` … `zone-Z`, round-robin (0: no zone labels).
    pub zones: usize,
    /// Volumes, pod logs and the kubeconfig live here.
    pub data_dir: PathBuf,
    /// Image name (without tag) → local binary that a container of that image runs.
    pub image_binaries: BTreeMap<String, PathBuf>,
}

enum Inner {
    Kubesim(kubesim::Cluster),
    Real {
        plane: SharedControlPlane,
        nodes: Option<NodeComponents>,
        audit: AuditLog,
    },
}

pub struct TestCluster {
    backend: Backend,
    inner: Inner,
    client: kube::Client,
    kubeconfig: PathBuf,
}

impl TestCluster {
    pub async fn start(backend: Backend, config: ClusterConfig) -> anyhow::Result<TestCluster> {
        match backend {
            Backend::Kubesim => {
                let cluster = kubesim::Cluster::start(kubesim::ClusterConfig {
                    nodes: config.nodes,
                    zones: config.zones,
                    data_dir: config.data_dir.clone(),
                    port: None,
                    image_binaries: config.image_binaries,
                })
                .await?;
                Ok(TestCluster {
                    backend,
                    client: cluster.client(),
                    kubeconfig: cluster.kubeconfig_path().to_path_buf(),
                    inner: Inner::Kubesim(cluster),
                })
            }
            Backend::Real => {
                let plane = shared::acquire().await?;
                let audit = AuditLog::from_now(&audit_log_path(&plane.info.dir));
                tracing::debug!(
                    in_ms = plane.acquired_in.as_millis() as u64,
                    "real control plane acquired"
                );
                std::fs::create_dir_all(&config.data_dir)?;
                // This test's own admin kubeconfig, where kubesim's would be.
                let kubeconfig = config.data_dir.join("kubeconfig");
                std::fs::copy(&plane.info.kubeconfig, &kubeconfig)
                    .context("cannot copy the admin kubeconfig")?;
                let ca_pem = std::fs::read_to_string(&plane.info.ca_cert)?;
                let nodes = NodeComponents::start(
                    plane.client.clone(),
                    NodesConfig {
                        nodes: config.nodes,
                        zones: config.zones,
                        data_dir: config.data_dir.clone(),
                        image_binaries: config.image_binaries,
                        mode: NodesMode::Attached,
                        pod_access: PodAccess::ServiceAccountTokens {
                            server: plane.info.server.clone(),
                            ca_pem,
                        },
                    },
                )
                .await
                .context("cannot attach kubesim's nodes to the real control plane")?;
                wait_schedulable(&plane.client, config.nodes).await?;
                Ok(TestCluster {
                    backend,
                    client: plane.client.clone(),
                    kubeconfig,
                    inner: Inner::Real {
                        plane,
                        nodes: Some(nodes),
                        audit,
                    },
                })
            }
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// An administrator's client (kubesim: no authentication; real: system:masters).
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// An administrator's kubeconfig, for kubectl.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    pub fn nodes(&self) -> &NodeComponents {
        match &self.inner {
            Inner::Kubesim(c) => c.nodes(),
            Inner::Real { nodes, .. } => nodes.as_ref().expect("nodes run until stop"),
        }
    }

    /// The API server's version (`v1.34.4` on the real control plane).
    pub async fn server_version(&self) -> anyhow::Result<String> {
        Ok(self.client.apiserver_version().await?.git_version)
    }

    /// A client acting as service account `namespace/name`, with a token as a kubelet
    /// would project it. kubesim authorizes nothing but records its requests under the
    /// account's name, so tests read them back from [`TestCluster::audit`] on both clusters.
    pub async fn service_account_client(
        &self,
        namespace: &str,
        name: &str,
    ) -> anyhow::Result<kube::Client> {
        kubeconfig::client(&self.service_account_kubeconfig(namespace, name).await?).await
    }

    /// A kubeconfig file acting as service account `namespace/name`, for a process (kubectl,
    /// a controller). On the real control plane it holds a token of the account; kubesim
    /// authorizes nothing, so its token is the account's user name, which kubesim's request
    /// log records as the user (see [`TestCluster::requests_of`]).
    pub async fn service_account_kubeconfig(
        &self,
        namespace: &str,
        name: &str,
    ) -> anyhow::Result<PathBuf> {
        let path = self
            .kubeconfig
            .with_file_name(format!("{namespace}-{name}.kubeconfig"));
        match &self.inner {
            Inner::Real { plane, .. } => {
                let token = service_account_token(&self.client, namespace, name).await?;
                let ca_pem = std::fs::read_to_string(&plane.info.ca_cert)?;
                kubeconfig::write(
                    &path,
                    &plane.info.server,
                    &ca_pem,
                    Credentials::Token(&token),
                    namespace,
                )?;
            }
            Inner::Kubesim(cluster) => {
                let user = service_account_user(namespace, name);
                let config = serde_json::json!({
                    "apiVersion": "v1", "kind": "Config",
                    "clusters": [{"name": "kubesim", "cluster": {"server": cluster.url()}}],
                    "users": [{"name": "kubesim", "user": {"token": user}}],
                    "contexts": [{"name": "kubesim", "context": {
                        "cluster": "kubesim", "user": "kubesim", "namespace": namespace}}],
                    "current-context": "kubesim",
                });
                std::fs::write(&path, serde_yaml_ng::to_string(&config)?)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                cluster.api_server().audit().enable();
            }
        }
        Ok(path)
    }

    /// How many requests `user` made since the cluster was taken (the real API server's audit
    /// log), or since a service account kubeconfig was first written (kubesim's request log).
    pub fn requests_of(&self, user: &str) -> anyhow::Result<usize> {
        Ok(self
            .audit()
            .events()?
            .iter()
            .filter(|e| e.user == user)
            .count())
    }

    /// Waits until the control plane's own controllers (kube-controller-manager's, each under
    /// its service account in kube-system) have made no request for `quiet`, at most `limit`;
    /// returns how long it waited. Their clients are rate-limited (20 requests a second by
    /// default): work a test or benchmark left them, such as deleting volumes, delays whatever
    /// comes next until it is done. On kubesim at once: its controllers run unthrottled.
    pub async fn settle(&self, quiet: Duration, limit: Duration) -> anyhow::Result<Duration> {
        let started = std::time::Instant::now();
        let Inner::Real { audit, .. } = &self.inner else {
            return Ok(Duration::ZERO);
        };
        let log = audit.from_here();
        let mut seen = 0;
        let mut last_change = started;
        loop {
            let now = std::time::Instant::now();
            let count = log
                .events()?
                .iter()
                .filter(|e| e.user.starts_with("system:serviceaccount:kube-system:"))
                .count();
            if count != seen {
                seen = count;
                last_change = now;
            }
            if now - last_change >= quiet || now - started >= limit {
                return Ok(now - started);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The API server's URL.
    pub fn url(&self) -> String {
        match &self.inner {
            Inner::Real { plane, .. } => plane.info.server.clone(),
            Inner::Kubesim(cluster) => cluster.url(),
        }
    }

    /// The requests the API server completed: the real one's audit log since this cluster was
    /// taken, kubesim's request log since a service account kubeconfig was first written.
    pub fn audit(&self) -> Requests<'_> {
        match &self.inner {
            Inner::Real { audit, .. } => Requests::Real(audit),
            Inner::Kubesim(cluster) => Requests::Kubesim(cluster.api_server().audit()),
        }
    }

    /// The process group of the real control plane's processes (etcd, kube-apiserver, its
    /// controllers and scheduler), for measuring what they cost (None on kubesim, which runs
    /// in the caller's process).
    pub fn control_plane_group(&self) -> Option<i32> {
        match &self.inner {
            Inner::Real { plane, .. } => Some(plane.info.group.0),
            Inner::Kubesim(_) => None,
        }
    }

    /// Where the real control plane's logs are (None on kubesim).
    pub fn control_plane_logs(&self) -> Option<PathBuf> {
        match &self.inner {
            Inner::Real { plane, .. } => Some(plane.info.logs_dir()),
            Inner::Kubesim(_) => None,
        }
    }

    /// Stops the nodes (and every pod's process), then kubesim's API server or, for the real
    /// control plane, gives it back to the run (the next test resets it).
    pub async fn stop(self) {
        match self.inner {
            Inner::Kubesim(cluster) => cluster.stop().await,
            Inner::Real {
                mut nodes, plane, ..
            } => {
                if let Some(nodes) = nodes.take() {
                    nodes.stop().await;
                }
                drop(plane);
            }
        }
    }
}

async fn service_account_token(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> anyhow::Result<String> {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: Vec::new(),
            expiration_seconds: Some(3600),
            bound_object_ref: None,
        },
        ..Default::default()
    };
    Ok(accounts
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .with_context(|| format!("cannot get a token of service account {namespace}/{name}"))?
        .status
        .context("the token request has no status")?
        .token)
}

/// Waits until the lifecycle controller has lifted the not-ready taint the admission plugin
/// puts on every new node, so the scheduler can use them all.
async fn wait_schedulable(client: &kube::Client, nodes: usize) -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::Node;
    let api: Api<Node> = Api::all(client.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let list = api.list(&Default::default()).await?;
        let ready = list
            .items
            .iter()
            .filter(|n| {
                !n.spec
                    .as_ref()
                    .and_then(|s| s.taints.as_ref())
                    .is_some_and(|t| t.iter().any(|t| t.key == "node.kubernetes.io/not-ready"))
            })
            .count();
        if ready >= nodes {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "only {ready} of {nodes} nodes became schedulable within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The user name the API server gives service account `namespace/name`.
pub fn service_account_user(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}
