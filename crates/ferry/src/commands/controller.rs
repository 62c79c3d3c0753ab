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
    /// Image of the data mover pods (ferry's own image; `ferry install` passes its --image).
    #[arg(long, env = "FERRY_IMAGE", default_value = ferry_controller::install::DEFAULT_IMAGE)]
    image: String,
    /// Serve /metrics, /healthz and /readyz here. On by default: the Deployment `ferry
    /// install` renders probes port 8080 and passes no flag.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_address: SocketAddr,
    /// Fail a restore whose data mover pod is not running this long after its restore PVC
    /// was created (seconds). Waiting for the workload (WaitForFirstConsumer) or for a free
    /// node slot does not count; the --prepare-timeout bounds that.
    #[arg(long, default_value_t = 600)]
    expose_timeout_seconds: u64,
    /// How long an accepted restore may wait for its target PVC to be created and (with
    /// WaitForFirstConsumer) consumed, as a Go duration (Velero's
    /// --data-mover-prepare-timeout).
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    prepare_timeout: Duration,
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
    options.metrics_address = Some(args.metrics_address);
    options.expose_timeout = Duration::from_secs(args.expose_timeout_seconds);
    options.prepare_timeout = args.prepare_timeout;
    options.service_account = args.service_account;
    options.resync_interval = Duration::from_secs(args.resync_seconds);
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    // Kubernetes stops a pod with SIGTERM: stop after the current pass and release the Lease,
    // so a successor takes over at once instead of waiting for it to expire.
    run_controller(options, async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: stopping"),
            _ = terminate.recv() => tracing::info!("SIGTERM: stopping"),
        }
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    ferry_controller::crds::parse_go_duration(text).map_err(|e| e.to_string())
}
