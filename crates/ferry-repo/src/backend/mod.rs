//! Storage backends: where the repository's files live. The layout is restic's:
//! `config`, `keys/<id>`, `snapshots/<id>`, `index/<id>`, `data/<id[0..2]>/<id>`, `locks/<id>`.

pub mod local;
pub mod retry;
pub mod s3;

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

/// The kinds of file in a restic repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileType {
    Config,
    Key,
    Snapshot,
    Index,
    Pack,
    Lock,
}

/// One file of the repository: its kind and its name (hex id; empty for `config`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Handle {
    pub kind: FileType,
    pub name: String,
}

impl Handle {
    pub fn new(kind: FileType, name: impl Into<String>) -> Self {
        Self {
            kind,
            name: name.into(),
        }
    }

    pub fn config() -> Self {
        Self::new(FileType::Config, "")
    }

    /// The path of this file relative to the repository root, as restic lays it out.
    pub fn relative_path(&self) -> String {
        match self.kind {
            FileType::Config => "config".to_string(),
            FileType::Key => format!("keys/{}", self.name),
            FileType::Snapshot => format!("snapshots/{}", self.name),
            FileType::Index => format!("index/{}", self.name),
            FileType::Lock => format!("locks/{}", self.name),
            FileType::Pack => format!("data/{}/{}", ferry_text::prefix(&self.name, 2), self.name),
        }
    }
}

impl fmt::Display for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.relative_path())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("{0} does not exist")]
    NotFound(String),
    /// Worth retrying: a 5xx, a timeout, a reset connection.
    #[error("transient error on {what}: {message}")]
    Transient { what: String, message: String },
    #[error("{what}: {message}")]
    Other { what: String, message: String },
    /// The location refuses writes (a read-only mount, a full file system, no write
    /// permission); reading may still work.
    #[error("{what}: cannot write: {message}")]
    ReadOnly { what: String, message: String },

    /// A restic backend ferry does not implement (`sftp:`, `rest:`, …).
    #[error(
        "unsupported backend '{scheme}': ferry supports local paths (or local:PATH) and s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX]"
    )]
    Unsupported { scheme: String },
}

/// restic's location prefixes that ferry has no backend for.
const UNSUPPORTED_SCHEMES: &[&str] = &["sftp", "rest", "azure", "gs", "b2", "swift", "rclone"];

/// A byte range of a repository file, as [`Backend::load_range`] delivers it.
pub enum RangeData {
    /// Read into memory; the caller may recycle the buffer.
    Buffer(Vec<u8>),
    /// A read-only mapping of a local file (pack files are immutable, so it cannot change
    /// under us).
    Mapped(memmap2::Mmap),
}

impl std::ops::Deref for RangeData {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            RangeData::Buffer(b) => b,
            RangeData::Mapped(m) => m,
        }
    }
}

/// A place that stores a repository's files. Implementations must be safe to call
/// concurrently: the engines fetch and store many files at once.
#[async_trait]
pub trait Backend: Send + Sync + fmt::Debug {
    /// A human-readable location (for messages), in restic's syntax.
    fn location(&self) -> String;
    /// Stores a whole file. Files are immutable: saving an existing name is an error
    /// for everything but locks.
    async fn save(&self, handle: &Handle, data: Bytes) -> Result<(), BackendError>;
    /// Stores a whole file only if no file of that name exists, deciding atomically: of
    /// several processes creating the same name at once, exactly one gets `Ok(true)` and
    /// its bytes are the file; the others get `Ok(false)` and change nothing. Readers never
    /// see a partial file. `data` should be unique to the caller (e.g. sealed with a random
    /// nonce): a retry that finds the very same bytes stored counts them as its own.
    ///
    /// There is deliberately no default: a check-then-write default would make the
    /// promise false. Repository creation decides its winner with this on `config`.
    async fn save_new(&self, handle: &Handle, data: Bytes) -> Result<bool, BackendError>;
    /// Reads a file, or the byte range of it.
    async fn load(&self, handle: &Handle, range: Option<Range<u64>>)
    -> Result<Bytes, BackendError>;
    /// The size of a file.
    async fn stat(&self, handle: &Handle) -> Result<u64, BackendError>;
    /// Removes a file; one that is not there counts as removed (S3's DELETE says so too).
    async fn remove(&self, handle: &Handle) -> Result<(), BackendError>;
    /// Reads a byte range into `buf` (cleared first, its allocation reused), so callers
    /// that read many ranges can recycle their buffers instead of allocating each time.
    async fn load_into(
        &self,
        handle: &Handle,
        range: Range<u64>,
        mut buf: Vec<u8>,
    ) -> Result<Vec<u8>, BackendError> {
        let data = self.load(handle, Some(range)).await?;
        buf.clear();
        buf.extend_from_slice(&data);
        Ok(buf)
    }
    /// Reads a byte range to be consumed in place. The default reads into `buf`; a local
    /// backend maps the file instead, so the bytes are never copied out of the page cache.
    async fn load_range(
        &self,
        handle: &Handle,
        range: Range<u64>,
        buf: Vec<u8>,
    ) -> Result<RangeData, BackendError> {
        Ok(RangeData::Buffer(self.load_into(handle, range, buf).await?))
    }
    /// Names and sizes of all files of a kind.
    async fn list(&self, kind: FileType) -> Result<Vec<(String, u64)>, BackendError>;
    /// Prepares an empty location for a new repository (directories, bucket prefix).
    /// The default does nothing: object stores need no preparation.
    async fn create(&self) -> Result<(), BackendError> {
        Ok(())
    }
}

/// Opens a repository location in restic's syntax: `s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX]`
/// for S3-compatible storage, `local:PATH` or a plain path for a local directory.
pub fn open(location: &str) -> Result<Arc<dyn Backend>, BackendError> {
    if location.starts_with("s3:") {
        return open_s3(location);
    }
    // restic reads these prefixes as backends, never as local paths; so does ferry.
    if let Some((scheme, _)) = location.split_once(':')
        && UNSUPPORTED_SCHEMES.contains(&scheme)
    {
        return Err(BackendError::Unsupported {
            scheme: scheme.to_string(),
        });
    }
    let path = location.strip_prefix("local:").unwrap_or(location);
    if path.is_empty() {
        return Err(BackendError::Other {
            what: "repository location".into(),
            message: "empty location: pass --repo PATH or set FERRY_REPOSITORY".into(),
        });
    }
    Ok(Arc::new(local::LocalBackend::new(path)))
}

fn open_s3(location: &str) -> Result<Arc<dyn Backend>, BackendError> {
    // Transient object-store failures (5xx, timeouts, resets) are retried with backoff.
    let s3 = s3::S3Backend::from_location(location)?;
    Ok(Arc::new(retry::RetryingBackend::new(s3)))
}
