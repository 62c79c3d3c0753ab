//! `kubesim serve`: runs a simulated cluster in the foreground until Ctrl-C.
//! `kubesim nodes`: attaches kubesim's nodes (kubelets and the hostpath CSI-style
//! provisioner) to any API server, e.g. a real control plane, until Ctrl-C.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use kubesim::{Cluster, ClusterConfig};

#[derive(Parser)]
#[command(
    name = "kubesim",
    about = "A simulated Kubernetes cluster for tests and demos"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the Kubernetes API on 127.0.0.1 with simulated nodes until interrupted.
    Serve(ServeArgs),
    /// Attach simulated nodes to a real control plane (whose kube-scheduler and
    /// kube-controller-manager schedule and bind) until interrupted.
    Nodes(NodesArgs),
}

#[derive(clap::Args)]
struct NodesArgs {
    /// An administrator's kubeconfig of the API server to attach to.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// Number of nodes (node-1 … node-N).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Number of zones (zone-1 … zone-Z), assigned to nodes round-robin.
    #[arg(long, default_value_t = 0)]
    zones: usize,
    /// Directory for volumes and pod logs.
    #[arg(long)]
    data_dir: PathBuf,
    /// IMAGE=PATH: containers of this image (name without tag) run the local binary PATH.
    #[arg(long = "image-binary", value_name = "IMAGE=PATH")]
    image_binaries: Vec<String>,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Number of nodes (node-1 … node-N).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Number of zones (zone-1 … zone-Z), assigned to nodes round-robin.
    #[arg(long, default_value_t = 0)]
    zones: usize,
    /// Directory for PV directories and pod logs.
    #[arg(long)]
    data_dir: PathBuf,
    /// Where to write the kubeconfig once the cluster is ready.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// Port on 127.0.0.1 (default: any free port).
    #[arg(long)]
    port: Option<u16>,
    /// IMAGE=PATH: containers of this image (name without tag) run the local binary PATH.
    /// Repeatable; also read from KUBESIM_IMAGE_BINARIES as a comma-separated list.
    #[arg(long = "image-binary", value_name = "IMAGE=PATH")]
    image_binaries: Vec<String>,
}

fn parse_image_binaries(args: &[String]) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    let mut map = BTreeMap::new();
    let from_env = std::env::var("KUBESIM_IMAGE_BINARIES").unwrap_or_default();
    let env_items = from_env.split(',').map(str::trim).filter(|s| !s.is_empty());
    for item in env_items.map(str::to_string).chain(args.iter().cloned()) {
        let Some((image, path)) = item.split_once('=') else {
            bail!("--image-binary {item:?}: expected IMAGE=PATH, e.g. ferry=target/release/ferry");
        };
        if image.is_empty() || path.is_empty() {
            bail!("--image-binary {item:?}: both IMAGE and PATH must be non-empty");
        }
        map.insert(image.to_string(), PathBuf::from(path));
    }
    Ok(map)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = match Cli::parse().command {
        Command::Serve(args) => args,
        Command::Nodes(args) => return attach_nodes(args).await,
    };
    let image_binaries = parse_image_binaries(&args.image_binaries)?;
    let cluster = Cluster::start(ClusterConfig {
        nodes: args.nodes,
        zones: args.zones,
        data_dir: args.data_dir.clone(),
        port: args.port,
        image_binaries,
    })
    .await
    .context("cannot start kubesim")?;
    cluster
        .api_server()
        .write_kubeconfig(&args.kubeconfig)
        .context("cannot write the kubeconfig")?;
    tracing::info!(
        url = %cluster.url(),
        kubeconfig = %args.kubeconfig.display(),
        nodes = args.nodes,
        "kubesim is ready; Ctrl-C stops it"
    );
    tokio::signal::ctrl_c()
        .await
        .context("cannot wait for Ctrl-C")?;
    tracing::info!("stopping kubesim");
    cluster.stop().await;
    Ok(())
}

async fn attach_nodes(args: NodesArgs) -> anyhow::Result<()> {
    use kubesim::nodes::{NodeComponents, NodesConfig, NodesMode, PodAccess};
    let image_binaries = parse_image_binaries(&args.image_binaries)?;
    let kubeconfig = kube::config::Kubeconfig::read_from(&args.kubeconfig)
        .with_context(|| format!("cannot read {}", args.kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig.clone(),
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .with_context(|| format!("{} is not usable", args.kubeconfig.display()))?;
    // Pods get service-account tokens for the same server, trusting the same CA.
    let ca_pem = config
        .root_cert
        .as_ref()
        .and_then(|certs| certs.first())
        .map(|der| pem_certificate(der))
        .context("the kubeconfig's cluster has no certificate-authority-data")?;
    let server = config
        .cluster_url
        .to_string()
        .trim_end_matches('/')
        .to_string();
    let client = kube::Client::try_from(config)?;
    let nodes = NodeComponents::start(
        client,
        NodesConfig {
            nodes: args.nodes,
            zones: args.zones,
            data_dir: args.data_dir.clone(),
            image_binaries,
            mode: NodesMode::Attached,
            pod_access: PodAccess::ServiceAccountTokens { server, ca_pem },
        },
    )
    .await?;
    tracing::info!(
        nodes = args.nodes,
        "kubesim's nodes are attached; Ctrl-C stops them"
    );
    tokio::signal::ctrl_c()
        .await
        .context("cannot wait for Ctrl-C")?;
    nodes.stop().await;
    Ok(())
}

fn pem_certificate(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}
