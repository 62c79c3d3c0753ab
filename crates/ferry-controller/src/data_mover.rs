//! What runs inside a restore pod: read the DataDownload, open the backup repository named by
//! its BackupStorageLocation, restore the snapshot into the mounted volume (a directory tree or
//! a raw block device), report progress into `status.progress`, and leave a JSON summary as
//! the container's termination message for the controller.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ferry_repo::backend::Backend;
use ferry_repo::backend::local::LocalBackend;
use ferry_repo::backend::retry::RetryingBackend;
use ferry_repo::backend::s3::{S3Backend, S3Config};
use ferry_repo::{Repository, RestoreOptions, RestoreProgress, RestoreTarget};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::crds::{BackupStorageLocation, BackupStorageLocationSpec, DataDownload};

/// Velero's repository password secret and key.
pub const REPO_PASSWORD_SECRET: &str = "velero-repo-credentials";
pub const REPO_PASSWORD_KEY: &str = "repository-password";
/// Velero's default cloud credentials secret (AWS credentials-file format under `cloud`).
pub const DEFAULT_CREDENTIALS_SECRET: &str = "cloud-credentials";
pub const DEFAULT_CREDENTIALS_KEY: &str = "cloud";

#[derive(Debug, thiserror::Error)]
pub enum DataMoverError {
    #[error("DataDownload {0} not found")]
    DataDownloadNotFound(String),
    #[error(
        "BackupStorageLocation {name} (named by DataDownload {dd} spec.backupStorageLocation) not found"
    )]
    LocationNotFound { name: String, dd: String },
    #[error("BackupStorageLocation {name}: {message}")]
    Location { name: String, message: String },
    #[error("secret {secret}: {message}")]
    Secret { secret: String, message: String },
    #[error("{0}")]
    Kube(String),
    #[error(
        "wrong password: no key in {location} opens with the password in secret {secret} (key {key}); \
         put there the password the repository was created with"
    )]
    WrongSecretPassword {
        location: String,
        secret: String,
        key: &'static str,
    },
    #[error(transparent)]
    Repo(#[from] ferry_repo::RepoError),
}

/// The repository's own wrong-password message points at the CLI's `--password-file`; a
/// data mover's password comes from a secret, which the message then names.
pub(crate) fn naming_password_source(
    err: ferry_repo::RepoError,
    namespace: &str,
    given: Option<&str>,
    secret: &str,
) -> DataMoverError {
    match err {
        ferry_repo::RepoError::WrongPassword { location } if given.is_none() => {
            DataMoverError::WrongSecretPassword {
                location,
                secret: format!("{namespace}/{secret}"),
                key: REPO_PASSWORD_KEY,
            }
        }
        other => other.into(),
    }
}

fn kube_err(what: &str, err: kube::Error) -> DataMoverError {
    DataMoverError::Kube(format!("{what}: {err}"))
}

/// How the data mover writes the volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VolumeMode {
    Filesystem,
    Block,
}

#[derive(Debug, Clone)]
pub struct DataMoverOptions {
    pub namespace: String,
    pub data_download: String,
    pub volume_path: PathBuf,
    pub volume_mode: VolumeMode,
    /// Secret (in `namespace`) holding the repository password under `repository-password`.
    pub password_secret: String,
    /// A password given directly wins over the secret.
    pub password: Option<String>,
    /// How often progress goes into the DataDownload's status.
    pub progress_interval: Duration,
}

/// The termination message: what the controller reads when the pod ends.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataMoverResult {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub snapshot_id: String,
    pub total_bytes: u64,
    pub bytes_done: u64,
    pub files: u64,
    pub seconds: f64,
    /// Bytes a backup added to the repository (new since its parent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incremental_bytes: Option<u64>,
    /// `ferry data-mover forget`: the snapshot was kept on purpose, and why (its tags do not
    /// name the DataUpload); None when it was forgotten (or was gone already).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept: Option<String>,
    /// What a successful restore could not put back without losing file data (a device node
    /// without MKNOD, an xattr the file system refuses): the controller turns them into a
    /// Warning event, so they are seen beyond the pod's log.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Where a location's repository for `source_namespace` lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepositoryLocation {
    Local(PathBuf),
    S3(Box<S3ConfigNoSecret>),
}

/// The S3 settings a location resolves to (credentials are read separately).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3ConfigNoSecret {
    pub endpoint: Option<String>,
    pub bucket: String,
    pub prefix: String,
    pub region: String,
    pub path_style: bool,
    pub profile: String,
}

fn join_prefix(parts: &[&str]) -> String {
    parts
        .iter()
        .flat_map(|p| p.split('/'))
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("/")
}

/// Where ferry's repositories live under a location's prefix: `plugins/ferry`. Velero checks
/// that a location's prefix holds only its own top-level directories (backups, restores,
/// restic, kopia, metadata, plugins) and marks the location Unavailable otherwise, so a
/// repository at `<prefix>/ferry/` would break every Velero backup to that location; `plugins/`
/// is where Velero lets plugins keep their data (the vSphere data mover kept its repository
/// under `plugins/` too).
pub const REPOSITORY_DIR: &str = "plugins/ferry";

/// Resolves a BackupStorageLocation to the repository of `source_namespace`:
/// `<prefix>/plugins/ferry/<sourceNamespace>` in the bucket (`provider: aws` and other
/// S3-compatible names), or `<config.path>/<bucket>/<prefix>/plugins/ferry/<sourceNamespace>`
/// (`provider: local`).
pub fn repository_location(
    name: &str,
    spec: &BackupStorageLocationSpec,
    source_namespace: &str,
) -> Result<RepositoryLocation, DataMoverError> {
    // The namespace is joined into the repository's path: never `..` or a `/`.
    crate::spec_checks::check_source_namespace(source_namespace).map_err(|message| {
        DataMoverError::Location {
            name: name.to_string(),
            message,
        }
    })?;
    let config = spec.config.clone().unwrap_or_default();
    let bucket = spec.object_storage.bucket.as_str();
    let prefix = spec.object_storage.prefix.as_deref().unwrap_or("");
    let location_err = |message: String| DataMoverError::Location {
        name: name.to_string(),
        message,
    };
    match spec.provider.trim_start_matches("velero.io/") {
        "local" => {
            let base = config.get("path").ok_or_else(|| {
                location_err("provider local needs config.path, an absolute directory".into())
            })?;
            if !Path::new(base).is_absolute() {
                return Err(location_err(format!(
                    "config.path {base:?} must be an absolute directory"
                )));
            }
            let relative = join_prefix(&[bucket, prefix, REPOSITORY_DIR, source_namespace]);
            Ok(RepositoryLocation::Local(Path::new(base).join(relative)))
        }
        "aws" | "s3" => {
            if bucket.is_empty() {
                return Err(location_err("spec.objectStorage.bucket is empty".into()));
            }
            let path_style = config
                .get("s3ForcePathStyle")
                .is_some_and(|v| v.eq_ignore_ascii_case("true"));
            Ok(RepositoryLocation::S3(Box::new(S3ConfigNoSecret {
                endpoint: config.get("s3Url").filter(|u| !u.is_empty()).cloned(),
                bucket: bucket.to_string(),
                prefix: join_prefix(&[prefix, REPOSITORY_DIR, source_namespace]),
                region: config
                    .get("region")
                    .cloned()
                    .unwrap_or_else(|| "us-east-1".into()),
                path_style,
                profile: config
                    .get("profile")
                    .cloned()
                    .unwrap_or_else(|| "default".into()),
            })))
        }
        other => Err(location_err(format!(
            "provider {other:?} is not supported by ferry: use aws (S3-compatible) or local"
        ))),
    }
}

/// Credentials from an AWS shared credentials file, for one profile.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

/// Parses the AWS credentials-file format (`[profile]` sections of `key = value`).
pub fn parse_aws_credentials(text: &str, profile: &str) -> Result<AwsCredentials, String> {
    let mut section = String::new();
    let mut values: BTreeMap<String, String> = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.trim().trim_start_matches("profile ").to_string();
            continue;
        }
        if section == profile
            && let Some((k, v)) = line.split_once('=')
        {
            values.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let get = |k: &str| values.get(k).cloned().filter(|v| !v.is_empty());
    Ok(AwsCredentials {
        access_key_id: get("aws_access_key_id")
            .ok_or_else(|| format!("profile [{profile}] has no aws_access_key_id"))?,
        secret_access_key: get("aws_secret_access_key")
            .ok_or_else(|| format!("profile [{profile}] has no aws_secret_access_key"))?,
        session_token: get("aws_session_token"),
    })
}

async fn secret_value(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    key: &str,
) -> Result<String, DataMoverError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let id = format!("{namespace}/{name}");
    let secret = secrets
        .get_opt(name)
        .await
        .map_err(|e| kube_err(&format!("reading secret {id}"), e))?
        .ok_or_else(|| DataMoverError::Secret {
            secret: id.clone(),
            message: "not found".into(),
        })?;
    if let Some(v) = secret.data.as_ref().and_then(|d| d.get(key)) {
        return String::from_utf8(v.0.clone()).map_err(|_| DataMoverError::Secret {
            secret: id.clone(),
            message: format!("key {key} is not UTF-8 text"),
        });
    }
    if let Some(v) = secret.string_data.as_ref().and_then(|d| d.get(key)) {
        return Ok(v.clone());
    }
    Err(DataMoverError::Secret {
        secret: id,
        message: format!("has no key {key}"),
    })
}

/// Opens the backend of a BackupStorageLocation for `source_namespace`.
pub async fn open_location_backend(
    client: &kube::Client,
    namespace: &str,
    bsl: &BackupStorageLocation,
    source_namespace: &str,
) -> Result<Arc<dyn Backend>, DataMoverError> {
    let name = bsl.metadata.name.clone().unwrap_or_default();
    match repository_location(&name, &bsl.spec, source_namespace)? {
        RepositoryLocation::Local(path) => Ok(Arc::new(LocalBackend::new(path))),
        RepositoryLocation::S3(s3) => {
            let (secret, key) = match &bsl.spec.credential {
                Some(sel) => (sel.name.clone(), sel.key.clone()),
                None => (
                    DEFAULT_CREDENTIALS_SECRET.to_string(),
                    DEFAULT_CREDENTIALS_KEY.to_string(),
                ),
            };
            let text = secret_value(client, namespace, &secret, &key).await?;
            let creds = parse_aws_credentials(&text, &s3.profile).map_err(|message| {
                DataMoverError::Secret {
                    secret: format!("{namespace}/{secret} key {key}"),
                    message,
                }
            })?;
            let config = S3Config {
                allow_http: s3
                    .endpoint
                    .as_deref()
                    .is_some_and(|e| e.starts_with("http://")),
                endpoint: s3.endpoint.clone(),
                bucket: s3.bucket.clone(),
                prefix: s3.prefix.clone(),
                region: s3.region.clone(),
                access_key_id: creds.access_key_id,
                secret_access_key: creds.secret_access_key,
                session_token: creds.session_token,
                path_style: s3.path_style,
            };
            let backend = S3Backend::new(config).map_err(|e| DataMoverError::Location {
                name,
                message: e.to_string(),
            })?;
            Ok(Arc::new(RetryingBackend::new(backend)))
        }
    }
}

/// Restores the DataDownload's snapshot into the volume. Progress goes into the DataDownload
/// every `progress_interval`.
pub async fn restore_data_download(
    client: &kube::Client,
    options: &DataMoverOptions,
) -> Result<DataMoverResult, DataMoverError> {
    let ns = &options.namespace;
    let dd_id = format!("{ns}/{}", options.data_download);
    let downloads: Api<DataDownload> = Api::namespaced(client.clone(), ns);
    let dd = downloads
        .get_opt(&options.data_download)
        .await
        .map_err(|e| kube_err(&format!("reading DataDownload {dd_id}"), e))?
        .ok_or_else(|| DataMoverError::DataDownloadNotFound(dd_id.clone()))?;
    let locations: Api<BackupStorageLocation> = Api::namespaced(client.clone(), ns);
    let bsl_name = dd.spec.backup_storage_location.clone();
    let bsl = locations
        .get_opt(&bsl_name)
        .await
        .map_err(|e| kube_err(&format!("reading BackupStorageLocation {ns}/{bsl_name}"), e))?
        .ok_or_else(|| DataMoverError::LocationNotFound {
            name: format!("{ns}/{bsl_name}"),
            dd: dd_id.clone(),
        })?;
    let backend = open_location_backend(client, ns, &bsl, &dd.spec.source_namespace).await?;
    let password = repository_password(
        client,
        ns,
        options.password.as_deref(),
        &options.password_secret,
    )
    .await?;
    let repo = Repository::open(backend, &password).await.map_err(|e| {
        naming_password_source(e, ns, options.password.as_deref(), &options.password_secret)
    })?;
    let snapshot = repo.find_snapshot(&dd.spec.snapshot_id).await?;
    tracing::info!(data_download = %dd_id, snapshot = %dd.spec.snapshot_id, location = %repo.location(), "restoring");

    let reporter = ProgressReporter::start(
        downloads.clone(),
        &options.data_download,
        options.progress_interval,
    );
    let target = match options.volume_mode {
        VolumeMode::Filesystem => RestoreTarget::Directory {
            path: options.volume_path.clone(),
            subpath: None,
        },
        VolumeMode::Block => RestoreTarget::Device {
            path: options.volume_path.clone(),
        },
    };
    let result = repo
        .restore(
            &snapshot,
            target,
            RestoreOptions::default(),
            reporter.callback(),
        )
        .await;
    let summary = result?;
    let total_bytes = summary.total_bytes;
    reporter.finish(total_bytes).await;
    Ok(DataMoverResult {
        ok: true,
        error: None,
        snapshot_id: snapshot.id.to_hex(),
        total_bytes,
        bytes_done: total_bytes,
        files: summary.files,
        seconds: summary.seconds,
        incremental_bytes: None,
        kept: None,
        warnings: summary
            .warnings
            .iter()
            .take(MAX_WARNINGS)
            .map(|w| {
                let mut w = w.clone();
                ferry_repo::text::truncate(&mut w, WARNING_BYTES);
                w
            })
            .collect(),
    })
}

/// At most this many warnings, of at most this many bytes each, go into the termination
/// message (the pod's log has them all): they share its 4,000 bytes with the error.
const MAX_WARNINGS: usize = 5;
const WARNING_BYTES: usize = 300;

/// The repository password: given on the command line, else the secret's
/// `repository-password` (a trailing newline, as `kubectl create secret --from-file` keeps
/// it, is not part of it).
pub async fn repository_password(
    client: &kube::Client,
    namespace: &str,
    given: Option<&str>,
    secret: &str,
) -> Result<String, DataMoverError> {
    Ok(match given {
        Some(p) => p.to_string(),
        None => secret_value(client, namespace, secret, REPO_PASSWORD_KEY)
            .await?
            .trim_end_matches(['\n', '\r'])
            .to_string(),
    })
}

/// Merge-patches `status.progress` of the DataDownload or DataUpload the data mover works
/// for, every interval while it changes, and once more at the end.
pub(crate) struct ProgressReporter<K: Clone> {
    api: Api<K>,
    name: String,
    total: Arc<AtomicU64>,
    done: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl<K> ProgressReporter<K>
where
    K: kube::Resource
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    pub(crate) fn start(api: Api<K>, name: &str, interval: Duration) -> Self {
        let total = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicU64::new(0));
        let task = {
            let (api, name) = (api.clone(), name.to_string());
            let (total, done) = (total.clone(), done.clone());
            tokio::spawn(async move {
                let mut last = (u64::MAX, u64::MAX);
                loop {
                    tokio::time::sleep(interval).await;
                    let now = (total.load(Ordering::Relaxed), done.load(Ordering::Relaxed));
                    if now != last {
                        report_progress(&api, &name, now.0, now.1).await;
                        last = now;
                    }
                }
            })
        };
        ProgressReporter {
            api,
            name: name.to_string(),
            total,
            done,
            task,
        }
    }

    /// The engine's progress callback, feeding this reporter.
    pub(crate) fn callback(&self) -> ferry_repo::restore::ProgressFn {
        let (total, done) = (self.total.clone(), self.done.clone());
        Arc::new(move |p: &RestoreProgress| {
            total.store(p.total_bytes, Ordering::Relaxed);
            done.store(p.bytes_done, Ordering::Relaxed);
        })
    }

    /// Sets the total before the engine knows it (a block device's size).
    pub(crate) fn set_total(&self, total: u64) {
        self.total.store(total, Ordering::Relaxed);
    }

    /// Stops the periodic reports and reports `total` bytes, all done.
    pub(crate) async fn finish(self, total: u64) {
        self.task.abort();
        report_progress(&self.api, &self.name, total, total).await;
    }
}

impl<K: Clone> Drop for ProgressReporter<K> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn report_progress<K>(api: &Api<K>, name: &str, total: u64, done: u64)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = json!({ "status": { "progress": { "totalBytes": total, "bytesDone": done } } });
    if let Err(err) = api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        tracing::warn!(object = name, error = %err, "cannot report progress");
    }
}

/// Most bytes of termination message written (Kubernetes keeps at most 4096).
const TERMINATION_MESSAGE_BYTES: usize = 4000;

/// Writes the termination message (Kubernetes keeps at most 4096 bytes of it).
pub fn write_termination_message(path: &Path, result: &DataMoverResult) -> std::io::Result<()> {
    let mut text = serde_json::to_string(result).unwrap_or_default();
    let mut shorter = result.clone();
    let mut budget = 3000;
    // Cut the error on a character boundary until the JSON fits: escapes (`\n`, `\u0001`)
    // make the JSON longer than the error, so one cut may not be enough.
    while text.len() > TERMINATION_MESSAGE_BYTES {
        // Warnings go first: the error is what a failure is about.
        if shorter.warnings.pop().is_some() {
            text = serde_json::to_string(&shorter).unwrap_or_default();
            continue;
        }
        let Some(err) = shorter.error.as_mut() else {
            break;
        };
        ferry_repo::text::truncate(err, budget);
        text = serde_json::to_string(&shorter).unwrap_or_default();
        if budget == 0 {
            break;
        }
        budget /= 2;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text)
}

/// Reads a termination message back (the controller's side).
pub fn parse_termination_message(text: &str) -> Option<DataMoverResult> {
    serde_json::from_str(text.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crds::ObjectStorageLocation;

    fn spec(
        provider: &str,
        config: &[(&str, &str)],
        bucket: &str,
        prefix: Option<&str>,
    ) -> BackupStorageLocationSpec {
        BackupStorageLocationSpec {
            provider: provider.into(),
            config: Some(
                config
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            object_storage: ObjectStorageLocation {
                bucket: bucket.into(),
                prefix: prefix.map(String::from),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn local_location_is_path_bucket_prefix_plugins_ferry_namespace() {
        let s = spec("local", &[("path", "/srv/backups")], "b", Some("velero/"));
        assert_eq!(
            repository_location("default", &s, "app").unwrap(),
            RepositoryLocation::Local("/srv/backups/b/velero/plugins/ferry/app".into())
        );
    }

    #[test]
    fn local_location_needs_an_absolute_path() {
        let s = spec("local", &[("path", "relative")], "b", None);
        let err = repository_location("default", &s, "app")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("BackupStorageLocation default") && err.contains("absolute"),
            "{err}"
        );
        let s = spec("local", &[], "b", None);
        assert!(
            repository_location("default", &s, "app")
                .unwrap_err()
                .to_string()
                .contains("config.path")
        );
    }

    #[test]
    fn aws_location_reads_velero_settings() {
        let s = spec(
            "velero.io/aws",
            &[
                ("s3Url", "http://127.0.0.1:9000"),
                ("s3ForcePathStyle", "true"),
                ("region", "minio"),
            ],
            "velero",
            Some("cluster-a"),
        );
        let RepositoryLocation::S3(s3) = repository_location("default", &s, "app").unwrap() else {
            panic!("expected S3");
        };
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(s3.bucket, "velero");
        assert_eq!(s3.prefix, "cluster-a/plugins/ferry/app");
        assert_eq!(s3.region, "minio");
        assert!(s3.path_style);
    }

    #[test]
    fn unknown_provider_is_named() {
        let s = spec("gcp", &[], "b", None);
        let err = repository_location("main", &s, "app")
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"gcp\"") && err.contains("main"), "{err}");
    }

    #[test]
    fn aws_credentials_file_profiles() {
        let text = "[default]\naws_access_key_id = AK\naws_secret_access_key=SK\n\n[other]\naws_access_key_id=X\naws_secret_access_key=Y\naws_session_token=T\n";
        assert_eq!(
            parse_aws_credentials(text, "default").unwrap(),
            AwsCredentials {
                access_key_id: "AK".into(),
                secret_access_key: "SK".into(),
                session_token: None
            }
        );
        assert_eq!(
            parse_aws_credentials(text, "other")
                .unwrap()
                .session_token
                .as_deref(),
            Some("T")
        );
        assert!(
            parse_aws_credentials(text, "missing")
                .unwrap_err()
                .contains("[missing]")
        );
    }

    #[test]
    fn termination_message_round_trips_and_stays_small() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dev/termination-log");
        let result = DataMoverResult {
            ok: false,
            error: Some("x".repeat(10_000)),
            ..Default::default()
        };
        write_termination_message(&path, &result).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.len() <= 4096);
        let back = parse_termination_message(&text).unwrap();
        assert!(!back.ok);
        assert_eq!(back.error.unwrap().len(), 3000);
    }

    #[test]
    fn termination_message_keeps_warnings_that_fit_and_drops_the_rest_before_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("termination-log");
        let result = DataMoverResult {
            ok: true,
            warnings: vec!["cannot create special file /v/dev/null: EPERM".to_string()],
            ..Default::default()
        };
        write_termination_message(&path, &result).unwrap();
        let back = parse_termination_message(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(back.warnings, result.warnings);

        let result = DataMoverResult {
            ok: false,
            error: Some("e".repeat(2000)),
            warnings: vec!["w".repeat(1000); 5],
            ..Default::default()
        };
        write_termination_message(&path, &result).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.len() <= 4096, "{} bytes", text.len());
        let back = parse_termination_message(&text).unwrap();
        assert_eq!(back.error.unwrap().len(), 2000, "the error is kept whole");
        assert_eq!(back.warnings.len(), 1);
    }

    #[test]
    fn termination_message_cuts_multi_byte_and_escaped_errors_safely() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("termination-log");
        // 3000 is not a multiple of 3 bytes per '€' plus the leading 'x': a byte cut panics.
        for error in [
            format!("x{}", "€".repeat(2000)),
            "😀".repeat(1500),
            "\u{1}".repeat(5000),
        ] {
            let result = DataMoverResult {
                ok: false,
                error: Some(error.clone()),
                ..Default::default()
            };
            write_termination_message(&path, &result).unwrap();
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(text.len() <= 4096, "{} bytes", text.len());
            let back = parse_termination_message(&text).unwrap().error.unwrap();
            assert!(!back.is_empty() && error.starts_with(&back), "{back:?}");
        }
    }
}
