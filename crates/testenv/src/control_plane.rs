//! The real Kubernetes control plane on 127.0.0.1: etcd, kube-apiserver (RBAC and Node
//! authorization, admission plugins including OwnerReferencesPermissionEnforcement),
//! kube-scheduler, kube-controller-manager (every default controller) and the CSI
//! snapshot-controller with its CRDs, all from the binaries `testenv/build` made, on free
//! ports, with a generated PKI and an admin kubeconfig. There are no nodes: kubesim's node
//! side attaches to it (see [`crate::cluster`]).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::PostParams;

use crate::binaries::Binaries;
use crate::kubeconfig::{self, Credentials};
use crate::pki::{CertFiles, Pki};
use crate::processes::{self, Group, Spawn};

/// The service CIDR; its first address is the `kubernetes` service.
const SERVICE_CIDR: &str = "10.96.0.0/16";
/// How long a start may take before it is given up, with the components' log tails.
const START_TIMEOUT: Duration = Duration::from_secs(180);

pub struct ControlPlaneOptions {
    /// Certificates, etcd's data, kubeconfigs and logs (`<dir>/logs/<component>.log`).
    pub dir: PathBuf,
    /// The process whose end stops the control plane (see [`processes::start_watchdog`]).
    pub owner: u32,
    /// Delete `dir` once stopped.
    pub remove_dir_on_stop: bool,
}

/// What a started control plane is, enough to use it from another process.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ControlPlaneInfo {
    pub dir: PathBuf,
    /// `https://127.0.0.1:PORT`
    pub server: String,
    /// An admin (system:masters) kubeconfig.
    pub kubeconfig: PathBuf,
    pub ca_cert: PathBuf,
    pub group: Group,
    /// The server's gitVersion, e.g. `v1.34.4`.
    pub version: String,
}

impl ControlPlaneInfo {
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        kubeconfig::client(&self.kubeconfig).await
    }

    /// Stops every process of this control plane (the watchdog then exits too).
    pub fn stop(&self) {
        let _ = std::fs::write(self.dir.join("stop"), b"");
        processes::stop_group(self.group, Duration::from_secs(5));
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }
}

struct Ports {
    etcd_client: u16,
    etcd_peer: u16,
    apiserver: u16,
    scheduler: u16,
    controller_manager: u16,
    snapshot_metrics: u16,
}

/// Starts a control plane and waits until it serves and its controllers have settled (the
/// `default` service account and `kube-root-ca.crt` exist, the snapshot CRDs are served).
pub async fn start(
    binaries: &Binaries,
    options: ControlPlaneOptions,
) -> anyhow::Result<ControlPlaneInfo> {
    let dir = options.dir.clone();
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let logs = dir.join("logs");
    let pki = Pki::generate(&dir)?;
    let p = processes::free_ports(6)?;
    let ports = Ports {
        etcd_client: p[0],
        etcd_peer: p[1],
        apiserver: p[2],
        scheduler: p[3],
        controller_manager: p[4],
        snapshot_metrics: p[5],
    };
    let server = format!("https://127.0.0.1:{}", ports.apiserver);
    let ca_pem = pki.ca.cert_pem()?;
    let kubeconfig = dir.join("admin.kubeconfig");
    write_kubeconfig(&kubeconfig, &server, &ca_pem, &pki.admin)?;
    let scheduler_kubeconfig = dir.join("kube-scheduler.kubeconfig");
    write_kubeconfig(&scheduler_kubeconfig, &server, &ca_pem, &pki.scheduler)?;
    let kcm_kubeconfig = dir.join("kube-controller-manager.kubeconfig");
    write_kubeconfig(&kcm_kubeconfig, &server, &ca_pem, &pki.controller_manager)?;
    std::fs::write(dir.join("audit-policy.yaml"), AUDIT_POLICY)?;

    let group = processes::spawn(
        Spawn {
            name: "etcd",
            program: &binaries.path("etcd")?,
            args: etcd_args(&dir, &ports),
            log_dir: &logs,
        },
        None,
    )?;
    // From here on the watchdog owns the group: a failed start or a dead owner stops it.
    processes::start_watchdog(group, options.owner, &dir, options.remove_dir_on_stop)?;
    let info = ControlPlaneInfo {
        dir: dir.clone(),
        server: server.clone(),
        kubeconfig: kubeconfig.clone(),
        ca_cert: pki.ca.cert.clone(),
        group,
        version: String::new(),
    };
    match start_components(
        binaries,
        &info,
        &pki,
        &ports,
        &scheduler_kubeconfig,
        &kcm_kubeconfig,
    )
    .await
    {
        Ok(version) => Ok(ControlPlaneInfo { version, ..info }),
        Err(e) => {
            info.stop();
            let tails: Vec<String> = [
                "etcd",
                "kube-apiserver",
                "kube-scheduler",
                "kube-controller-manager",
                "snapshot-controller",
            ]
            .iter()
            .map(|c| {
                format!(
                    "--- {c} ---\n{}",
                    processes::log_tail(&processes::log_path(&logs, c), 15)
                )
            })
            .collect();
            Err(e.context(format!(
                "the control plane in {} did not start; the last lines of its logs:\n{}",
                dir.display(),
                tails.join("\n")
            )))
        }
    }
}

fn write_kubeconfig(
    path: &Path,
    server: &str,
    ca_pem: &str,
    user: &CertFiles,
) -> anyhow::Result<()> {
    kubeconfig::write(
        path,
        server,
        ca_pem,
        Credentials::Certificate {
            cert_pem: &user.cert_pem()?,
            key_pem: &user.key_pem()?,
        },
        "default",
    )
}

async fn start_components(
    binaries: &Binaries,
    info: &ControlPlaneInfo,
    pki: &Pki,
    ports: &Ports,
    scheduler_kubeconfig: &Path,
    kcm_kubeconfig: &Path,
) -> anyhow::Result<String> {
    let started = Instant::now();
    let logs = info.logs_dir();
    let spawn = |name: &str, args: Vec<String>| -> anyhow::Result<()> {
        processes::spawn(
            Spawn {
                name,
                program: &binaries.path(name)?,
                args,
                log_dir: &logs,
            },
            Some(info.group),
        )?;
        Ok(())
    };
    spawn("kube-apiserver", apiserver_args(&info.dir, pki, ports))?;
    let client = info.client().await?;
    let version = wait_until(started, "kube-apiserver to be ready", || async {
        let ready = client
            .request_text(http::Request::get("/readyz").body(Vec::new()).ok()?)
            .await
            .ok()?;
        if ready.trim() != "ok" {
            return None;
        }
        client.apiserver_version().await.ok().map(|v| v.git_version)
    })
    .await?;
    spawn(
        "kube-scheduler",
        vec![
            format!("--kubeconfig={}", scheduler_kubeconfig.display()),
            format!(
                "--authentication-kubeconfig={}",
                scheduler_kubeconfig.display()
            ),
            format!(
                "--authorization-kubeconfig={}",
                scheduler_kubeconfig.display()
            ),
            "--leader-elect=false".into(),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={}", ports.scheduler),
        ],
    )?;
    spawn(
        "kube-controller-manager",
        vec![
            format!("--kubeconfig={}", kcm_kubeconfig.display()),
            format!("--authentication-kubeconfig={}", kcm_kubeconfig.display()),
            format!("--authorization-kubeconfig={}", kcm_kubeconfig.display()),
            "--leader-elect=false".into(),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={}", ports.controller_manager),
            "--controllers=*".into(),
            "--use-service-account-credentials=true".into(),
            format!("--root-ca-file={}", pki.ca.cert.display()),
            format!(
                "--service-account-private-key-file={}",
                pki.service_account_key.display()
            ),
            format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            // Nodes registered by a test become schedulable within a second (the
            // not-ready taint the admission plugin puts on a new node is lifted on the
            // lifecycle controller's next pass); the grace period stays Kubernetes' own.
            "--node-monitor-period=1s".into(),
        ],
    )?;
    install_snapshot_crds(binaries, &client).await?;
    spawn(
        "snapshot-controller",
        vec![
            format!("--kubeconfig={}", info.kubeconfig.display()),
            "--leader-election=false".into(),
            format!("--http-endpoint=127.0.0.1:{}", ports.snapshot_metrics),
        ],
    )?;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    wait_until(started, "the controller manager to settle", || async {
        accounts.get_opt("default").await.ok()??;
        maps.get_opt("kube-root-ca.crt").await.ok()??;
        Some(())
    })
    .await?;
    Ok(version)
}

fn etcd_args(dir: &Path, ports: &Ports) -> Vec<String> {
    let client = format!("http://127.0.0.1:{}", ports.etcd_client);
    let peer = format!("http://127.0.0.1:{}", ports.etcd_peer);
    vec![
        "--name=testenv".into(),
        format!("--data-dir={}", dir.join("etcd").display()),
        format!("--listen-client-urls={client}"),
        format!("--advertise-client-urls={client}"),
        format!("--listen-peer-urls={peer}"),
        format!("--initial-advertise-peer-urls={peer}"),
        format!("--initial-cluster=testenv={peer}"),
        // Test data: durability across power loss is not wanted, speed is.
        "--unsafe-no-fsync=true".into(),
        "--log-level=warn".into(),
    ]
}

/// Every request's metadata (who, verb, object, response code) once it completed: tests
/// read it to prove what ferry's identities asked for and were allowed.
const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  resources: [{group: coordination.k8s.io, resources: [leases]}]
  users: [system:kube-scheduler, system:kube-controller-manager, ferry-testenv-admin]
- level: Metadata
";

/// The API server's audit log (JSON lines, see [`AUDIT_POLICY`]).
pub fn audit_log_path(dir: &Path) -> PathBuf {
    dir.join("logs").join("audit.log")
}

fn apiserver_args(dir: &Path, pki: &Pki, ports: &Ports) -> Vec<String> {
    vec![
        format!(
            "--audit-policy-file={}",
            dir.join("audit-policy.yaml").display()
        ),
        format!("--audit-log-path={}", audit_log_path(dir).display()),
        "--audit-log-format=json".into(),
        "--audit-log-mode=blocking".into(),
        format!("--etcd-servers=http://127.0.0.1:{}", ports.etcd_client),
        "--bind-address=127.0.0.1".into(),
        "--advertise-address=127.0.0.1".into(),
        format!("--secure-port={}", ports.apiserver),
        // The endpoints reconciler refuses a loopback address; no pod reaches the service.
        "--endpoint-reconciler-type=none".into(),
        format!("--tls-cert-file={}", pki.apiserver.cert.display()),
        format!("--tls-private-key-file={}", pki.apiserver.key.display()),
        format!("--client-ca-file={}", pki.ca.cert.display()),
        format!(
            "--requestheader-client-ca-file={}",
            pki.front_proxy_ca.cert.display()
        ),
        "--requestheader-allowed-names=front-proxy-client".into(),
        "--requestheader-username-headers=X-Remote-User".into(),
        "--requestheader-group-headers=X-Remote-Group".into(),
        "--requestheader-extra-headers-prefix=X-Remote-Extra-".into(),
        format!(
            "--proxy-client-cert-file={}",
            pki.front_proxy_client.cert.display()
        ),
        format!(
            "--proxy-client-key-file={}",
            pki.front_proxy_client.key.display()
        ),
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
        format!(
            "--service-account-key-file={}",
            pki.service_account_pub.display()
        ),
        format!(
            "--service-account-signing-key-file={}",
            pki.service_account_key.display()
        ),
        format!("--service-cluster-ip-range={SERVICE_CIDR}"),
        "--authorization-mode=Node,RBAC".into(),
        "--enable-admission-plugins=NodeRestriction,OwnerReferencesPermissionEnforcement".into(),
        "--allow-privileged=true".into(),
        "--profiling=false".into(),
    ]
}

async fn install_snapshot_crds(binaries: &Binaries, client: &kube::Client) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for file in binaries.snapshot_crds()? {
        let text = std::fs::read_to_string(&file)?;
        let crd: CustomResourceDefinition = serde_yaml_ng::from_str(&text)
            .with_context(|| format!("{} is not a CRD", file.display()))?;
        match crds.create(&PostParams::default(), &crd).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", file.display())),
        }
    }
    Ok(())
}

/// Polls `probe` every 100 ms until it gives a value, or fails after [`START_TIMEOUT`].
async fn wait_until<T, F, Fut>(started: Instant, what: &str, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    loop {
        if let Some(v) = probe().await {
            return Ok(v);
        }
        if started.elapsed() > START_TIMEOUT {
            bail!("timed out after {:?} waiting for {what}", START_TIMEOUT);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
