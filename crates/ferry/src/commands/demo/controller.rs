//! ferry's controller, run in this process (the demo) or as its own `ferry controller`
//! process (the bench, so that its memory and API requests are its own), and what it needs
//! installed.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use ferry_controller::ControllerOptions;
use ferry_controller::install::{DATA_MOVER_NAME, InstallOptions, render};
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams};

use super::{kube_ops, objects};

/// A running controller.
pub struct Controller {
    run: Run,
    description: String,
}

enum Run {
    InProcess(ferry_controller::ControllerHandle),
    Process(tokio::process::Child),
}

impl Controller {
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The controller's process id, when it runs as a process of its own.
    pub fn pid(&self) -> Option<u32> {
        match &self.run {
            Run::InProcess(_) => None,
            Run::Process(child) => child.id(),
        }
    }

    /// Stops it (a process as Ctrl-C would, so it releases its Lease for the next one) and
    /// gives a process's peak resident memory in bytes.
    pub async fn stop(self) -> Option<u64> {
        match self.run {
            Run::InProcess(handle) => {
                handle.stop().await;
                None
            }
            Run::Process(mut child) => {
                let pid = child.id()?;
                let peak = peak_rss(pid);
                // SAFETY: signalling our own child, which has not been waited for yet.
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGINT);
                }
                if tokio::time::timeout(Duration::from_secs(15), child.wait())
                    .await
                    .is_err()
                {
                    let _ = child.kill().await;
                }
                peak
            }
        }
    }
}

/// A process's peak resident set size (VmHWM), in bytes.
fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Installs what `ferry install` renders for the demo's namespace and ConfigMap — the CRDs
/// ferry and Velero share, the controller's and the data mover's service accounts and RBAC —
/// with the controller Deployment at 0 replicas (the demo runs its own), and waits until the
/// API server serves the CRDs. On the real control plane the RBAC is what lets them work.
pub async fn install(client: &Client) -> anyhow::Result<()> {
    let mut options = InstallOptions::new(objects::NODE_AGENT_CONFIGMAP);
    options.namespace = objects::FERRY_NAMESPACE.into();
    let mut manifests = render(&options).context("rendering ferry's manifests")?;
    if let Some(spec) = manifests.deployment.spec.as_mut() {
        spec.replicas = Some(0);
    }
    ferry_controller::install::apply(client, &manifests)
        .await
        .context("installing ferry's CRDs, service accounts and RBAC")?;
    // Served once a list answers.
    let downloads: Api<DynamicObject> =
        Api::all_with(client.clone(), &objects::data_download_resource());
    kube_ops::wait_for(
        "the DataDownload CRD to be served",
        Duration::from_secs(30),
        || {
            let downloads = downloads.clone();
            async move {
                Ok(downloads
                    .list(&ListParams::default().limit(1))
                    .await
                    .ok()
                    .map(|_| ()))
            }
        },
    )
    .await
}

/// Where the controller runs.
pub enum Placement<'a> {
    /// In this process, with this client.
    InProcess(&'a Client),
    /// As `ferry controller`, this binary, reaching the API server through `kubeconfig`,
    /// logging to `log` (at `FERRY_CONTROLLER_LOG`, default info).
    Process { kubeconfig: &'a Path, log: &'a Path },
}

/// Starts the DataDownload controller for the demo's namespace and node-agent ConfigMap (which
/// must exist). Its restore pods use the demo's image, which the nodes run as this binary, as
/// the data mover's service account `ferry install` creates.
pub async fn start(placement: Placement<'_>, image: &str) -> anyhow::Result<Controller> {
    let image = format!("{image}:demo");
    match placement {
        Placement::InProcess(client) => {
            let mut options = ControllerOptions::new(
                client.clone(),
                objects::FERRY_NAMESPACE,
                objects::NODE_AGENT_CONFIGMAP,
            );
            options.image = image;
            options.identity = "ferry-demo-controller".into();
            options.service_account = Some(DATA_MOVER_NAME.into());
            let handle = ferry_controller::start_controller(options)
                .await
                .context("starting ferry's DataDownload controller")?;
            Ok(Controller {
                run: Run::InProcess(handle),
                description: format!(
                    "DataDownload and DataUpload controller in-process (namespace `{}`, ConfigMap `{}`)",
                    objects::FERRY_NAMESPACE,
                    objects::NODE_AGENT_CONFIGMAP
                ),
            })
        }
        Placement::Process { kubeconfig, log } => start_process(kubeconfig, log, &image).await,
    }
}

async fn start_process(kubeconfig: &Path, log: &Path, image: &str) -> anyhow::Result<Controller> {
    let exe = std::env::current_exe().context("finding this ferry binary")?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let address = format!("127.0.0.1:{port}");
    let child = tokio::process::Command::new(exe)
        .args(["controller", "--namespace", objects::FERRY_NAMESPACE])
        .args(["--node-agent-configmap", objects::NODE_AGENT_CONFIGMAP])
        .args(["--image", image, "--service-account", DATA_MOVER_NAME])
        .args(["--metrics-address", &address])
        .env("KUBECONFIG", kubeconfig)
        .env(
            "FERRY_LOG",
            std::env::var("FERRY_CONTROLLER_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(
            std::fs::File::create(log)
                .with_context(|| format!("creating the controller's log {}", log.display()))?,
        )
        .kill_on_drop(true)
        .spawn()
        .context("starting `ferry controller`")?;
    let controller = Controller {
        run: Run::Process(child),
        description: format!(
            "`ferry controller` process (ready at http://{address}/readyz, log {})",
            log.display()
        ),
    };
    kube_ops::wait_for(
        "the controller process to be ready",
        Duration::from_secs(60),
        || {
            let address = address.clone();
            async move { Ok(is_ready(&address).await.then_some(())) }
        },
    )
    .await?;
    Ok(controller)
}

/// `GET /readyz` answered 200.
async fn is_ready(address: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(address).await else {
        return false;
    };
    let request = format!("GET /readyz HTTP/1.0\r\nHost: {address}\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    answer.starts_with(b"HTTP/1.1 200") || answer.starts_with(b"HTTP/1.0 200")
}
