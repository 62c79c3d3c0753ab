//! Where a BackupStorageLocation's repository lives and how the data mover gets in: the
//! repository path under the location (`<prefix>/plugins/ferry/<sourceNamespace>`), the S3
//! credentials from the location's secret, and the repository password from Velero's secret.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ferry_controller::crds::{BackupStorageLocation, BackupStorageLocationSpec};
use ferry_repo::Repository;
use ferry_repo::backend::Backend;
use ferry_repo::backend::local::LocalBackend;
use ferry_repo::backend::retry::RetryingBackend;
use ferry_repo::backend::s3::{S3Backend, S3Config};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use zeroize::Zeroizing;

use crate::error::{DataMoverError, kube_err};

/// Velero's repository password secret and key.
pub const REPO_PASSWORD_SECRET: &str = "velero-repo-credentials";
pub const REPO_PASSWORD_KEY: &str = "repository-password";
/// Velero's default cloud credentials secret (AWS credentials-file format under `cloud`).
pub const DEFAULT_CREDENTIALS_SECRET: &str = "cloud-credentials";
pub const DEFAULT_CREDENTIALS_KEY: &str = "cloud";

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
    ferry_controller::spec_checks::check_source_namespace(source_namespace).map_err(|message| {
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

/// Where a data mover's repository password comes from: given on its command line, else
/// Velero's secret (in the data mover's namespace) under `repository-password`.
#[derive(Debug, Clone)]
pub struct PasswordSource {
    /// The secret's name.
    pub secret: String,
    /// A password given directly wins over the secret.
    pub given: Option<String>,
}

impl PasswordSource {
    /// The password (a trailing newline, as `kubectl create secret --from-file` keeps it, is
    /// not part of it).
    pub async fn read(
        &self,
        client: &kube::Client,
        namespace: &str,
    ) -> Result<Zeroizing<String>, DataMoverError> {
        Ok(Zeroizing::new(match &self.given {
            Some(p) => p.clone(),
            None => secret_value(client, namespace, &self.secret, REPO_PASSWORD_KEY)
                .await?
                .trim_end_matches(['\n', '\r'])
                .to_string(),
        }))
    }

    /// Opens the repository behind `backend` with this password. With `create_wait`, a
    /// repository that does not exist yet is created (and one that another data mover is
    /// creating is waited for that long), as Velero's repository ensurer does.
    pub async fn open_repository(
        &self,
        client: &kube::Client,
        namespace: &str,
        backend: Arc<dyn Backend>,
        create_wait: Option<Duration>,
    ) -> Result<Repository, DataMoverError> {
        let password = self.read(client, namespace).await?;
        let opened = match create_wait {
            Some(wait) => Repository::open_or_init(backend, &password, None, wait).await,
            None => Repository::open(backend, &password).await,
        };
        opened.map_err(|err| self.named_in(err, namespace))
    }

    /// The repository's own wrong-password message points at the CLI's `--password-file`; a
    /// data mover's password comes from a secret, which the message then names.
    fn named_in(&self, err: ferry_repo::RepoError, namespace: &str) -> DataMoverError {
        match err {
            ferry_repo::RepoError::WrongPassword { location } if self.given.is_none() => {
                DataMoverError::WrongSecretPassword {
                    location,
                    secret: format!("{namespace}/{}", self.secret),
                    key: REPO_PASSWORD_KEY,
                }
            }
            other => other.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_controller::crds::ObjectStorageLocation;

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
}
