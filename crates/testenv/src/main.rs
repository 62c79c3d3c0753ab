//! `testenv up`: the real Kubernetes control plane on 127.0.0.1 with kubesim's nodes, in the
//! foreground until Ctrl-C or SIGTERM; everything it started stops with it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use kubesim::nodes::{NodeComponents, NodesConfig, NodesMode, PodAccess};
use testenv::Binaries;
use testenv::control_plane::{self, ControlPlaneOptions};

#[derive(Parser)]
#[command(
    name = "testenv",
    about = "ferry's test clusters: the real Kubernetes control plane (pinned, built from Go modules) with simulated nodes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start etcd, kube-apiserver, kube-scheduler, kube-controller-manager and the CSI
    /// snapshot-controller on 127.0.0.1 (free ports), attach kubesim's nodes, write an
    /// admin kubeconfig, and run until interrupted.
    Up(UpArgs),
    /// Build the pinned components if this machine has not yet, and print their folder.
    Build,
}

#[derive(clap::Args)]
struct UpArgs {
    /// Number of nodes (node-1 … node-N).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Number of zones (zone-1 … zone-Z), assigned to nodes round-robin.
    #[arg(long, default_value_t = 0)]
    zones: usize,
    /// Certificates, etcd's data, logs, volumes and pod logs (kept after stop).
    #[arg(long)]
    data_dir: PathBuf,
    /// Where to write the admin kubeconfig (default: DATA_DIR/kubeconfig).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// IMAGE=PATH: containers of this image (name without tag) run the local binary PATH.
    #[arg(long = "image-binary", value_name = "IMAGE=PATH")]
    image_binaries: Vec<String>,
    /// Also start Velero (namespace velero): its CRDs, an S3 location on moto, the AWS
    /// plugin, a VolumeSnapshotClass for kubesim's driver, and `velero server`.
    #[arg(long)]
    velero: bool,
}

fn parse_image_binaries(args: &[String]) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    args.iter()
        .map(|item| match item.split_once('=') {
            Some((image, path)) if !image.is_empty() && !path.is_empty() => {
                Ok((image.to_string(), PathBuf::from(path)))
            }
            _ => bail!(
                "--image-binary {item:?}: expected IMAGE=PATH, e.g. ferry=target/release/ferry"
            ),
        })
        .collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube_client=off".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Build => {
            println!("{}", Binaries::locate()?.dir().display());
            Ok(())
        }
        Command::Up(args) => up(args).await,
    }
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    let image_binaries = parse_image_binaries(&args.image_binaries)?;
    let binaries = Binaries::locate()?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let data_dir = std::fs::canonicalize(&args.data_dir)?;
    let started = std::time::Instant::now();
    let plane = control_plane::start(
        &binaries,
        ControlPlaneOptions {
            dir: data_dir.join("control-plane"),
            owner: std::process::id(),
            remove_dir_on_stop: false,
        },
    )
    .await?;
    let kubeconfig = args
        .kubeconfig
        .unwrap_or_else(|| data_dir.join("kubeconfig"));
    std::fs::copy(&plane.kubeconfig, &kubeconfig)
        .with_context(|| format!("cannot write {}", kubeconfig.display()))?;
    let client = plane.client().await?;
    let nodes = NodeComponents::start(
        client,
        NodesConfig {
            nodes: args.nodes,
            zones: args.zones,
            data_dir: data_dir.clone(),
            image_binaries,
            mode: NodesMode::Attached,
            pod_access: PodAccess::ServiceAccountTokens {
                server: plane.server.clone(),
                ca_pem: std::fs::read_to_string(&plane.ca_cert)?,
            },
        },
    )
    .await;
    let nodes = match nodes {
        Ok(nodes) => nodes,
        Err(e) => {
            plane.stop();
            return Err(e);
        }
    };
    let velero = if args.velero {
        let client = plane.client().await?;
        match testenv::velero::Velero::start_with(client, &kubeconfig, &data_dir.join("velero"))
            .await
        {
            Ok(velero) => {
                eprintln!(
                    "Velero is running (namespace velero, location default on {}; logs in {}).\n  \
                     velero --kubeconfig {} backup-location get",
                    velero.s3_url(),
                    velero.logs().display(),
                    kubeconfig.display()
                );
                Some(velero)
            }
            Err(e) => {
                nodes.stop().await;
                plane.stop();
                return Err(e);
            }
        }
    } else {
        None
    };
    eprintln!(
        "Kubernetes {} is up at {} ({} nodes) after {:.1} s.\n  export KUBECONFIG={}\n  kubectl get nodes\nLogs: {}\nCtrl-C stops everything.",
        plane.version,
        plane.server,
        args.nodes,
        started.elapsed().as_secs_f64(),
        kubeconfig.display(),
        plane.logs_dir().display(),
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    eprintln!("stopping…");
    drop(velero);
    nodes.stop().await;
    plane.stop();
    Ok(())
}
