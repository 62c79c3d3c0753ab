//! `ferry controller`: the DataDownload controller (leader-elected, metrics on an HTTP port).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use ferry_controller::{ControllerOptions, run_controller};

#[derive(clap::Args, Debug)]
pub struct ControllerArgs {
    /// Namespace of the DataDownloads, restore PVCs and pods (ferry's or Velero's namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "velero")]
    namespace: String,
    /// The node-agent ConfigMap (in --namespace); it must exist.
    #[arg(long)]
    node_agent_configmap: String,
    /// The `spec.datamover` value this controller handles.
    #[arg(long, default_value = "ferry")]
    data_mover_name: String,
    /// Image of the restore pods (ferry's own image).
    #[arg(long, env = "FERRY_IMAGE", default_value = "ferry/ferry:dev")]
    image: String,
    /// Serve /metrics, /healthz and /readyz here, e.g. 0.0.0.0:8085.
    #[arg(long)]
    metrics_address: Option<SocketAddr>,
    /// Fail a restore whose pod is not running this long after acceptance (seconds).
    #[arg(long, default_value_t = 600)]
    expose_timeout_seconds: u64,
    /// Service account of the restore pods.
    #[arg(long)]
    service_account: Option<String>,
    /// Passes run on every watched change; this is the safety net when nothing changes
    /// (a missed event, timeouts), in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    resync_seconds: u64,
}

pub async fn run(args: ControllerArgs) -> anyhow::Result<ExitCode> {
    let client = kube::Client::try_default()
        .await
        .context("cannot reach the Kubernetes API (KUBECONFIG or in-cluster config)")?;
    let mut options = ControllerOptions::new(client, &args.namespace, &args.node_agent_configmap);
    options.data_mover_name = args.data_mover_name;
    options.image = args.image;
    options.metrics_address = args.metrics_address;
    options.expose_timeout = Duration::from_secs(args.expose_timeout_seconds);
    options.service_account = args.service_account;
    options.resync_interval = Duration::from_secs(args.resync_seconds);
    run_controller(options, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}
