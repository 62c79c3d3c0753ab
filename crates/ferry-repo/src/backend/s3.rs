//! S3-compatible object storage (AWS S3, MinIO, Ceph RGW, moto, …) as a repository backend.
//!
//! Objects live under the location's prefix in restic's layout (`PREFIX/config`,
//! `PREFIX/data/ab/abcd…`, …), so restic's s3 backend and ferry share a repository.
//!
//! Retries: object_store's own retry loop is switched off, so every failure surfaces at once,
//! classified: a 5xx, 429, timeout or broken connection is [`BackendError::Transient`] and
//! [`super::retry::RetryingBackend`] retries it with backoff; 404 is
//! [`BackendError::NotFound`]; anything else ([`BackendError::Other`]) is not worth retrying.
//! An endpoint that has never answered (connection refused, unknown host) is `Other` with a
//! message naming the endpoint: a mistyped location fails at once instead of after minutes of
//! backoff.

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::client::{HttpError, HttpErrorKind};
use object_store::path::Path;
use object_store::{
    ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig,
};

use super::{Backend, BackendError, FileType, Handle};

/// The region used when the location and environment name none (what AWS and most
/// S3-compatible servers accept).
pub const DEFAULT_REGION: &str = "us-east-1";

/// Connecting longer than this means the endpoint is down or unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A whole request (a pack is tens of MiB at most) taking longer than this is stuck.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// Where and how to reach a bucket.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Config {
    /// `http[s]://HOST[:PORT]` of an S3-compatible server; `None` for AWS S3 itself.
    pub endpoint: Option<String>,
    pub bucket: String,
    /// The repository's folder inside the bucket, without leading or trailing `/`; may be empty.
    pub prefix: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    /// Allow a plain-HTTP endpoint.
    pub allow_http: bool,
    /// `http://HOST/BUCKET/KEY` addressing instead of `http://BUCKET.HOST/KEY`.
    pub path_style: bool,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret or the session token.
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("allow_http", &self.allow_http)
            .field("path_style", &self.path_style)
            .finish_non_exhaustive()
    }
}

fn location_error(location: &str, message: impl Into<String>) -> BackendError {
    BackendError::Other {
        what: format!("repository location {location:?}"),
        message: message.into(),
    }
}

impl S3Config {
    /// Parses restic's S3 location syntax, `s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX]` or the
    /// older `s3:HOST/BUCKET[/PREFIX]` (HTTPS; `s3.amazonaws.com` means AWS itself), taking
    /// credentials and region from `env` (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_SESSION_TOKEN`, `AWS_DEFAULT_REGION` or `AWS_REGION`). Addressing is path-style.
    pub fn from_location(
        location: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<S3Config, BackendError> {
        let rest = location.strip_prefix("s3:").ok_or_else(|| {
            location_error(
                location,
                "not an S3 location: use s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX]",
            )
        })?;
        if rest.starts_with("//") {
            return Err(location_error(
                location,
                "s3://BUCKET is not restic's syntax: use s3:https://HOST[:PORT]/BUCKET[/PREFIX] \
                 (for AWS: s3:s3.amazonaws.com/BUCKET[/PREFIX])",
            ));
        }
        let (scheme, rest) = if let Some(r) = rest.strip_prefix("https://") {
            ("https", r)
        } else if let Some(r) = rest.strip_prefix("http://") {
            ("http", r)
        } else if rest.contains("://") {
            return Err(location_error(
                location,
                "unsupported scheme: the endpoint must be http:// or https://",
            ));
        } else {
            ("https", rest)
        };
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        if host.is_empty() || host.contains(['@', '?', '#', ' ']) {
            return Err(location_error(
                location,
                "missing or invalid host: use s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX]",
            ));
        }
        let mut parts = path.split('/').filter(|p| !p.is_empty());
        let bucket = parts.next().ok_or_else(|| {
            location_error(
                location,
                "no bucket: use s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX]",
            )
        })?;
        let prefix = parts.collect::<Vec<_>>().join("/");
        // AWS itself: let the client pick the regional endpoint.
        let endpoint = if scheme == "https" && host == "s3.amazonaws.com" {
            None
        } else {
            Some(format!("{scheme}://{host}"))
        };
        let non_empty = |name: &str| env(name).filter(|v| !v.is_empty());
        let access_key_id = non_empty("AWS_ACCESS_KEY_ID").ok_or_else(|| {
            location_error(
                location,
                "AWS_ACCESS_KEY_ID is not set: export the access key of the bucket's account",
            )
        })?;
        let secret_access_key = non_empty("AWS_SECRET_ACCESS_KEY").ok_or_else(|| {
            location_error(
                location,
                "AWS_SECRET_ACCESS_KEY is not set: export the secret key of the bucket's account",
            )
        })?;
        let region = non_empty("AWS_DEFAULT_REGION")
            .or_else(|| non_empty("AWS_REGION"))
            .unwrap_or_else(|| DEFAULT_REGION.to_string());
        Ok(S3Config {
            endpoint,
            bucket: bucket.to_string(),
            prefix,
            region,
            access_key_id,
            secret_access_key,
            session_token: non_empty("AWS_SESSION_TOKEN"),
            allow_http: scheme == "http",
            path_style: true,
        })
    }

    /// The location in restic's syntax.
    pub fn location(&self) -> String {
        let host = self.endpoint.as_deref().unwrap_or("s3.amazonaws.com");
        let mut location = format!("s3:{host}/{}", self.bucket);
        if !self.prefix.is_empty() {
            location.push('/');
            location.push_str(&self.prefix);
        }
        location
    }
}

/// A repository in an S3 bucket.
pub struct S3Backend {
    store: AmazonS3,
    location: String,
    endpoint: String,
    bucket: String,
    /// Normalised prefix, empty or without surrounding slashes.
    prefix: String,
    /// Whether the endpoint has ever answered: until it has, a connection failure is reported
    /// as a configuration problem rather than retried.
    reached: AtomicBool,
}

impl fmt::Debug for S3Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Backend")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl S3Backend {
    pub fn new(config: S3Config) -> Result<S3Backend, BackendError> {
        let location = config.location();
        let prefix = config
            .prefix
            .split('/')
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join("/");
        let client_options = ClientOptions::new()
            .with_allow_http(config.allow_http)
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT);
        // Our retry layer decides; object_store's own would hide failures for minutes.
        let no_retries = RetryConfig {
            max_retries: 0,
            ..RetryConfig::default()
        };
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_access_key_id(&config.access_key_id)
            .with_secret_access_key(&config.secret_access_key)
            .with_allow_http(config.allow_http)
            .with_virtual_hosted_style_request(!config.path_style)
            .with_client_options(client_options)
            .with_retry(no_retries);
        if let Some(token) = &config.session_token {
            builder = builder.with_token(token);
        }
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        let store = builder.build().map_err(|e| BackendError::Other {
            what: format!("repository location {location:?}"),
            message: format!("cannot configure the S3 client: {e}"),
        })?;
        let endpoint = config
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", config.region));
        Ok(S3Backend {
            store,
            location,
            endpoint,
            bucket: config.bucket,
            prefix,
            reached: AtomicBool::new(false),
        })
    }

    /// Opens a location in restic's syntax with credentials from the environment
    /// (see [`S3Config::from_location`]).
    pub fn from_location(location: &str) -> Result<S3Backend, BackendError> {
        S3Backend::new(S3Config::from_location(location, |name| {
            std::env::var(name).ok()
        })?)
    }

    /// The object key of a repository-relative path.
    fn key(&self, relative: &str) -> Path {
        if self.prefix.is_empty() {
            Path::from(relative)
        } else {
            Path::from(format!("{}/{relative}", self.prefix))
        }
    }

    fn answered(&self) {
        self.reached.store(true, Ordering::Relaxed);
    }

    /// Turns an object_store error on `what` into a classified backend error (see the module doc).
    fn error(&self, what: &str, err: object_store::Error) -> BackendError {
        let what = format!("{}/{what}", self.location);
        let message = error_chain(&err);
        let failure = match err {
            // A missing bucket is a 404 too, but not a missing file.
            object_store::Error::NotFound { .. } if !message.contains("NoSuchBucket") => {
                self.answered();
                return BackendError::NotFound(what);
            }
            _ => classify(&err, &message),
        };
        match failure {
            Failure::Unreachable if !self.reached.load(Ordering::Relaxed) => BackendError::Other {
                what,
                message: format!(
                    "cannot connect to the S3 endpoint {}: {message}; check HOST[:PORT] in the \
                     repository location and that the server is running",
                    self.endpoint
                ),
            },
            Failure::Unreachable | Failure::Transient => BackendError::Transient { what, message },
            Failure::Denied => {
                self.answered();
                BackendError::Other {
                    what,
                    message: format!(
                        "access denied: {message}; check AWS_ACCESS_KEY_ID, \
                         AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) and the bucket policy"
                    ),
                }
            }
            Failure::NoSuchBucket => {
                self.answered();
                BackendError::Other {
                    what,
                    message: format!(
                        "bucket {:?} does not exist at {}: create it first or fix BUCKET in the \
                         repository location",
                        self.bucket, self.endpoint
                    ),
                }
            }
            Failure::Permanent => {
                self.answered();
                BackendError::Other { what, message }
            }
        }
    }
}

/// What kind of failure an object_store error is.
#[derive(Debug, PartialEq, Eq)]
enum Failure {
    /// The endpoint could not be connected to.
    Unreachable,
    /// Worth retrying: 5xx, 429/SlowDown, timeout, a connection broken mid-request.
    Transient,
    Denied,
    NoSuchBucket,
    Permanent,
}

/// The error and all its sources, `: `-separated (object_store's top-level message alone
/// often hides the cause).
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

fn classify(err: &(dyn std::error::Error + 'static), message: &str) -> Failure {
    // Transport failures carry an HttpError somewhere in the chain.
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(cause) = source {
        if let Some(http) = cause.downcast_ref::<HttpError>() {
            return match http.kind() {
                HttpErrorKind::Connect => Failure::Unreachable,
                _ => Failure::Transient,
            };
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(
                io.kind(),
                TimedOut | ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
            ) {
                return Failure::Transient;
            }
        }
        source = cause.source();
    }
    // HTTP statuses are only visible in the text ("… non-2xx status code: 503 …").
    let status = message
        .split("status code: ")
        .nth(1)
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse::<u16>().ok());
    match status {
        Some(500..=599) | Some(429) | Some(408) => Failure::Transient,
        _ if message.contains("SlowDown") || message.contains("InternalError") => {
            Failure::Transient
        }
        _ if message.contains("NoSuchBucket") => Failure::NoSuchBucket,
        Some(401) | Some(403) => Failure::Denied,
        _ => Failure::Permanent,
    }
}

#[async_trait]
impl Backend for S3Backend {
    fn location(&self) -> String {
        self.location.clone()
    }

    /// Overwrites like restic's s3 backend: S3 has no cheap exclusive create, and a retried
    /// upload whose first attempt landed must not fail.
    async fn save(&self, handle: &Handle, data: Bytes) -> Result<(), BackendError> {
        let key = self.key(&handle.relative_path());
        self.store
            .put(&key, PutPayload::from(data))
            .await
            .map_err(|e| self.error(&handle.relative_path(), e))?;
        self.answered();
        Ok(())
    }

    /// A conditional PUT (`If-None-Match: *`, which AWS S3, MinIO, Ceph RGW, R2 and moto
    /// honour): the server refuses it with 412 when the object exists. AWS answers 409
    /// ConditionalRequestConflict while another conditional write of the same key is in
    /// flight: that one is retried, it may still fail.
    ///
    /// A server that ignores the header overwrites instead. Reading the object back catches
    /// an overwrite that landed between our write and that read (this call then reports
    /// `false` and warns), but cannot make such a server safe for concurrent creation.
    async fn save_new(&self, handle: &Handle, data: Bytes) -> Result<bool, BackendError> {
        let relative = handle.relative_path();
        let key = self.key(&relative);
        let put = self
            .store
            .put_opts(
                &key,
                PutPayload::from(data.clone()),
                PutOptions::from(PutMode::Create),
            )
            .await;
        match put {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { source, .. }) => {
                self.answered();
                let message = error_chain(source.as_ref());
                if message.contains("ConditionalRequestConflict") {
                    return Err(BackendError::Transient {
                        what: format!("{}/{relative}", self.location),
                        message,
                    });
                }
                return Ok(false);
            }
            Err(e) => return Err(self.error(&relative, e)),
        }
        self.answered();
        let stored = self.load(handle, None).await?;
        if stored != data {
            tracing::warn!(
                file = %format!("{}/{relative}", self.location),
                "the S3 server replaced an existing object although the upload asked it not to \
                 (If-None-Match: *): it does not support conditional writes, so concurrent \
                 repository creation is not safe on it"
            );
            return Ok(false);
        }
        Ok(true)
    }

    async fn load(
        &self,
        handle: &Handle,
        range: Option<Range<u64>>,
    ) -> Result<Bytes, BackendError> {
        let relative = handle.relative_path();
        let key = self.key(&relative);
        let data = match range.clone() {
            None => {
                let result = self
                    .store
                    .get(&key)
                    .await
                    .map_err(|e| self.error(&relative, e))?;
                let expected = result.meta.size;
                let data = result.bytes().await.map_err(|e| self.error(&relative, e))?;
                if data.len() as u64 != expected {
                    return Err(BackendError::Transient {
                        what: format!("{}/{relative}", self.location),
                        message: format!("read {} of {expected} bytes", data.len()),
                    });
                }
                data
            }
            Some(r) if r.start > r.end => {
                return Err(BackendError::Other {
                    what: format!("{}/{relative}", self.location),
                    message: format!("invalid byte range {}..{}", r.start, r.end),
                });
            }
            // S3 cannot express an empty range; the file must still exist.
            Some(r) if r.start == r.end => {
                self.stat(handle).await?;
                Bytes::new()
            }
            Some(r) => self
                .store
                .get_range(&key, r)
                .await
                .map_err(|e| self.error(&relative, e))?,
        };
        self.answered();
        if let Some(r) = range
            && data.len() as u64 != r.end - r.start
        {
            return Err(BackendError::Other {
                what: format!("{}/{relative}", self.location),
                message: format!(
                    "asked for bytes {}..{} but got {} bytes: the file is shorter",
                    r.start,
                    r.end,
                    data.len()
                ),
            });
        }
        Ok(data)
    }

    async fn stat(&self, handle: &Handle) -> Result<u64, BackendError> {
        let relative = handle.relative_path();
        let meta = self
            .store
            .head(&self.key(&relative))
            .await
            .map_err(|e| self.error(&relative, e))?;
        self.answered();
        Ok(meta.size)
    }

    /// Removing a file that does not exist succeeds (S3 semantics).
    async fn remove(&self, handle: &Handle) -> Result<(), BackendError> {
        let relative = handle.relative_path();
        self.store
            .delete(&self.key(&relative))
            .await
            .map_err(|e| self.error(&relative, e))?;
        self.answered();
        Ok(())
    }

    async fn list(&self, kind: FileType) -> Result<Vec<(String, u64)>, BackendError> {
        if kind == FileType::Config {
            return match self.stat(&Handle::config()).await {
                Ok(size) => Ok(vec![(String::new(), size)]),
                Err(BackendError::NotFound(_)) => Ok(Vec::new()),
                Err(e) => Err(e),
            };
        }
        // The folder of this kind: "keys/x" without the "/x".
        let sample = Handle::new(kind, "00").relative_path();
        let folder = match kind {
            FileType::Pack => "data",
            _ => sample.split('/').next().unwrap_or_default(),
        };
        let folder_key = self.key(folder);
        let strip = format!("{}/", folder_key.as_ref());
        // object_store pages through ListObjectsV2 with continuation tokens until the end.
        let objects: Vec<_> = self
            .store
            .list(Some(&folder_key))
            .try_collect()
            .await
            .map_err(|e| self.error(&format!("{folder}/"), e))?;
        self.answered();
        let mut files = Vec::with_capacity(objects.len());
        for meta in objects {
            let Some(below) = meta.location.as_ref().strip_prefix(&strip) else {
                continue;
            };
            let name = match (kind, below.split_once('/')) {
                // data/ab/abcd…: exactly one level of two-character folders.
                (FileType::Pack, Some((sub, name))) if sub.len() == 2 && !name.contains('/') => {
                    name
                }
                (FileType::Pack, _) => continue,
                (_, None) => below,
                (_, Some(_)) => continue,
            };
            if name.is_empty() {
                continue;
            }
            files.push((name.to_string(), meta.size));
        }
        Ok(files)
    }

    /// Checks that the bucket is reachable and usable before a repository is written there.
    async fn create(&self) -> Result<(), BackendError> {
        self.store
            .list_with_delimiter(Some(&self.key("keys")))
            .await
            .map_err(|e| self.error("keys/", e))?;
        self.answered();
        Ok(())
    }
}
