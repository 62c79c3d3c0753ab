//! Velero itself on the real control plane, as a process outside the cluster (`velero server
//! --kubeconfig …`), the way the acceptance tests and a user trying ferry with Velero run it:
//! Velero's CRDs (`velero install --crds-only --dry-run -o yaml`), an S3-compatible object
//! store on loopback (moto, from PyPI) holding the BackupStorageLocation `default`, its
//! credentials secret, a VolumeSnapshotClass for kubesim's CSI driver labelled for Velero, and
//! the AWS object-store plugin in the plugin folder. Velero's own node-agent is not started:
//! ferry is the data mover.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use kube::Api;
use kube::api::{DynamicObject, PostParams};
use kube::discovery::ApiResource;

use crate::binaries::Binaries;
use crate::cluster::TestCluster;
use crate::processes::{self, Group};

pub const NAMESPACE: &str = "velero";
pub const BUCKET: &str = "velero";
pub const PREFIX: &str = "backups";
pub const LOCATION: &str = "default";
pub const CREDENTIALS_SECRET: &str = "cloud-credentials";
pub const SNAPSHOT_CLASS: &str = "kubesim-snapshots";
/// The Velero release testenv/velero/go.mod pins (the stand-in Deployment's image tag).
pub const VELERO_VERSION: &str = "v1.18.3";
pub const ACCESS_KEY_ID: &str = "velero-test-key";
pub const SECRET_ACCESS_KEY: &str = "velero-test-secret";
const REGION: &str = "us-east-1";

/// A running Velero server and its object store; both stop when this is dropped (and, through
/// their watchdog, when this process ends).
pub struct Velero {
    velero: PathBuf,
    kubeconfig: PathBuf,
    dir: PathBuf,
    server: Group,
    store: Group,
    store_port: u16,
}

impl Velero {
    /// Installs Velero's CRDs and configuration into `cluster` (creating namespace
    /// `velero`) and starts moto and `velero server`; returns once the BackupStorageLocation is
    /// Available. `dir` holds the logs, the plugin folder and the CLI's config.
    pub async fn start(cluster: &TestCluster, dir: &Path) -> anyhow::Result<Velero> {
        Velero::start_with(cluster.client(), cluster.kubeconfig_path(), dir).await
    }

    /// [`Velero::start`] for any cluster an admin `client` and `kubeconfig` reach.
    pub async fn start_with(
        client: kube::Client,
        kubeconfig: &Path,
        dir: &Path,
    ) -> anyhow::Result<Velero> {
        let binaries = Binaries::locate()?;
        let velero = binaries.path("velero")?;
        let plugin = binaries.path("velero-plugin-for-aws")?;
        let kubectl = binaries.path("kubectl")?;
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs)?;
        let kubeconfig = kubeconfig.to_path_buf();
        let namespace: k8s_openapi::api::core::v1::Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": NAMESPACE}}))?;
        match Api::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e).context("cannot create namespace velero"),
        }

        // The object store first: the location's validation starts with the server.
        let store_port = processes::free_ports(1)?[0];
        let store = spawn_with_env(
            "moto",
            Path::new("python3"),
            ["-m", "moto.server", "-H", "127.0.0.1", "-p"]
                .iter()
                .map(|s| s.to_string())
                .chain([store_port.to_string()])
                .collect(),
            &logs,
            &[],
        )
        .context("cannot start moto (python3 -m moto.server; pip install 'moto[server]')")?;
        processes::start_watchdog(store, std::process::id(), &dir.join("moto"), false)?;
        wait_http(
            store_port,
            "PUT",
            &format!("/{BUCKET}"),
            Duration::from_secs(60),
        )
        .await
        .with_context(|| {
            format!(
                "moto did not create bucket {BUCKET}: {}",
                processes::log_tail(&processes::log_path(&logs, "moto"), 20)
            )
        })?;

        // Velero's CRDs, as `velero install` renders them.
        let crds = tokio::process::Command::new(&velero)
            .args(["install", "--crds-only", "--dry-run", "-o", "yaml"])
            .env("HOME", dir)
            .output()
            .await
            .context("cannot run velero install --crds-only")?;
        if !crds.status.success() {
            bail!(
                "velero install --crds-only failed: {}",
                String::from_utf8_lossy(&crds.stderr)
            );
        }
        let mut apply = tokio::process::Command::new(&kubectl)
            .args(["apply", "--server-side", "-f", "-"])
            .env("KUBECONFIG", &kubeconfig)
            .env("HOME", dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot run kubectl")?;
        {
            use tokio::io::AsyncWriteExt;
            let mut stdin = apply.stdin.take().expect("piped");
            stdin.write_all(&crds.stdout).await?;
        }
        let applied = apply.wait_with_output().await?;
        if !applied.status.success() {
            bail!(
                "applying Velero's CRDs failed: {}",
                String::from_utf8_lossy(&applied.stderr)
            );
        }
        wait_served(&client, "backupstoragelocations").await?;

        create(
            &client,
            ("", "v1", "Secret", "secrets"),
            serde_json::json!({
                "metadata": {"name": CREDENTIALS_SECRET, "namespace": NAMESPACE},
                "stringData": {"cloud": credentials_file()},
            }),
        )
        .await?;
        create(
            &client,
            (
                "velero.io",
                "v1",
                "BackupStorageLocation",
                "backupstoragelocations",
            ),
            serde_json::json!({
                "metadata": {"name": LOCATION, "namespace": NAMESPACE},
                "spec": {
                    "provider": "aws", "default": true,
                    "objectStorage": {"bucket": BUCKET, "prefix": PREFIX},
                    "credential": {"name": CREDENTIALS_SECRET, "key": "cloud"},
                    "config": {"region": REGION, "s3ForcePathStyle": "true",
                               "s3Url": format!("http://127.0.0.1:{store_port}")},
                },
            }),
        )
        .await?;
        create(
            &client,
            (
                "snapshot.storage.k8s.io",
                "v1",
                "VolumeSnapshotClass",
                "volumesnapshotclasses",
            ),
            serde_json::json!({
                "metadata": {"name": SNAPSHOT_CLASS,
                             "labels": {"velero.io/csi-volumesnapshot-class": "true"}},
                "driver": kubesim::nodes::bootstrap::PROVISIONER,
                "deletionPolicy": "Delete",
            }),
        )
        .await?;

        // The server runs outside the cluster, but Velero's pod-volume restore action (run
        // for every restored pod, data mover or not) reads its own Deployment `velero` for the
        // image of its restore helper, and fails the restore without it: a stand-in at zero
        // replicas records what `velero install` would have deployed.
        create(
            &client,
            ("apps", "v1", "Deployment", "deployments"),
            serde_json::json!({
                "metadata": {"name": "velero", "namespace": NAMESPACE,
                             "labels": {"component": "velero"}},
                "spec": {
                    "replicas": 0,
                    "selector": {"matchLabels": {"deploy": "velero"}},
                    "template": {
                        "metadata": {"labels": {"deploy": "velero", "component": "velero"}},
                        "spec": {"containers": [{
                            "name": "velero", "image": format!("velero/velero:{VELERO_VERSION}"),
                            "args": ["server", "--features=EnableCSI"],
                        }]},
                    },
                },
            }),
        )
        .await?;

        // The plugin folder holds the AWS plugin; Velero runs its built-in plugins itself.
        let plugins = dir.join("plugins");
        std::fs::create_dir_all(&plugins)?;
        let link = plugins.join("velero-plugin-for-aws");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&plugin, &link)?;
        let ports = processes::free_ports(2)?;
        let credentials = dir.join("credentials");
        std::fs::write(&credentials, credentials_file())?;
        let args = vec![
            "server".to_string(),
            format!("--kubeconfig={}", kubeconfig.display()),
            format!("--namespace={NAMESPACE}"),
            format!("--plugin-dir={}", plugins.display()),
            "--features=EnableCSI".into(),
            format!("--metrics-address=127.0.0.1:{}", ports[0]),
            format!("--profiler-address=127.0.0.1:{}", ports[1]),
            "--log-level=info".into(),
        ];
        let server = spawn_with_env(
            "velero-server",
            &velero,
            args,
            &logs,
            &[
                ("HOME", dir.as_os_str()),
                ("AWS_SHARED_CREDENTIALS_FILE", credentials.as_os_str()),
            ],
        )?;
        processes::start_watchdog(server, std::process::id(), &dir.join("server"), false)?;
        let velero = Velero {
            velero,
            kubeconfig,
            dir: dir.to_path_buf(),
            server,
            store,
            store_port,
        };
        velero
            .wait_location_available(Duration::from_secs(90))
            .await
            .with_context(|| {
                format!(
                    "Velero's BackupStorageLocation did not become Available: {}",
                    processes::log_tail(&processes::log_path(&logs, "velero-server"), 30)
                )
            })?;
        Ok(velero)
    }

    /// The S3 endpoint the location points at.
    pub fn s3_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.store_port)
    }

    /// Where Velero's and moto's logs are.
    pub fn logs(&self) -> PathBuf {
        self.dir.join("logs")
    }

    /// Runs the velero CLI against the cluster (namespace `velero`); returns its output.
    pub async fn cli(&self, args: &[&str]) -> anyhow::Result<std::process::Output> {
        tokio::process::Command::new(&self.velero)
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .arg(format!("--namespace={NAMESPACE}"))
            .args(args)
            .env("HOME", &self.dir)
            .output()
            .await
            .context("cannot run the velero CLI")
    }

    async fn wait_location_available(&self, limit: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let out = self
                .cli(&["backup-location", "get", LOCATION, "-o", "json"])
                .await?;
            if out.status.success() {
                let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
                if v["status"]["phase"] == "Available" {
                    return Ok(());
                }
            }
            if !processes::group_alive(self.server) {
                bail!("velero server exited");
            }
            if tokio::time::Instant::now() > deadline {
                bail!("still not Available after {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

impl Drop for Velero {
    fn drop(&mut self) {
        processes::stop_group(self.server, Duration::from_secs(5));
        processes::stop_group(self.store, Duration::from_secs(5));
    }
}

/// The AWS shared credentials file for moto's (any) keys.
pub fn credentials_file() -> String {
    format!(
        "[default]\naws_access_key_id={ACCESS_KEY_ID}\naws_secret_access_key={SECRET_ACCESS_KEY}\n"
    )
}

fn spawn_with_env(
    name: &str,
    program: &Path,
    args: Vec<String>,
    log_dir: &Path,
    env: &[(&str, &std::ffi::OsStr)],
) -> anyhow::Result<Group> {
    use std::os::unix::process::CommandExt;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(processes::log_path(log_dir, name))?;
    let mut command = std::process::Command::new(program);
    command
        .args(&args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0);
    for (k, v) in env {
        command.env(k, v);
    }
    let child = command
        .spawn()
        .with_context(|| format!("cannot start {}", program.display()))?;
    Ok(Group(child.id() as i32))
}

async fn create(
    client: &kube::Client,
    (group, version, kind, plural): (&str, &str, &str, &str),
    object: serde_json::Value,
) -> anyhow::Result<()> {
    let resource = ApiResource::from_gvk_with_plural(
        &kube::core::GroupVersionKind::gvk(group, version, kind),
        plural,
    );
    let mut object: DynamicObject = serde_json::from_value(object)?;
    object.types = Some(kube::core::TypeMeta {
        api_version: resource.api_version.clone(),
        kind: kind.into(),
    });
    let api: Api<DynamicObject> = match object.metadata.namespace.clone() {
        Some(ns) => Api::namespaced_with(client.clone(), &ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    match api.create(&PostParams::default(), &object).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot create {kind}")),
    }
}

async fn wait_served(client: &kube::Client, plural: &str) -> anyhow::Result<()> {
    let resource = ApiResource::from_gvk_with_plural(
        &kube::core::GroupVersionKind::gvk("velero.io", "v1", "BackupStorageLocation"),
        plural,
    );
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), NAMESPACE, &resource);
    for _ in 0..300 {
        if api.list(&Default::default()).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("Velero's CRDs are not served")
}

/// Sends `METHOD path` to 127.0.0.1:`port` until it answers 2xx.
async fn wait_http(port: u16, method: &str, path: &str, limit: Duration) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            let request = format!(
                "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\r\n"
            );
            if stream.write_all(request.as_bytes()).await.is_ok() {
                let mut answer = Vec::new();
                let _ = stream.read_to_end(&mut answer).await;
                if answer.starts_with(b"HTTP/1.0 2") || answer.starts_with(b"HTTP/1.1 2") {
                    return Ok(());
                }
            }
        }
        if tokio::time::Instant::now() > deadline {
            bail!("no 2xx answer to {method} {path} within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
