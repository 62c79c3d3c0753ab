//! The repository's typed errors. Each names the object and says what to do.

use crate::backend::BackendError;

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error(
        "wrong password: no key in {location} opens with the given password; check --password-file / FERRY_PASSWORD"
    )]
    WrongPassword { location: String },
    #[error(
        "no repository at {location}: there is no config file; run `ferry repo init` first or fix --repo"
    )]
    NoRepository { location: String },
    /// The config exists but no key file does: the repository is being created right now
    /// (its creator writes the config first, then its key), or its keys were lost.
    #[error(
        "the repository at {location} has a config file but no key file: another process may \
         be creating it right now (try again in a moment), or its keys/ folder was lost"
    )]
    NoKey { location: String },
    /// [`crate::Repository::open_or_init`] waited for another process to finish creating the
    /// repository, in vain.
    #[error("gave up after waiting {waited_secs}s for the repository to become usable: {last}")]
    NotReady {
        waited_secs: u64,
        last: Box<RepoError>,
    },
    #[error(
        "key file {what} is corrupt: {reason}; restore it from a copy, or remove it if another key opens the repository"
    )]
    CorruptKey { what: String, reason: String },
    #[error(
        "an empty password is refused for a new repository (restic refuses it too): choose a password"
    )]
    EmptyPassword,
    #[error("cannot derive the key of {what}: {reason}")]
    KeyDerivation { what: String, reason: String },
    #[error("a repository already exists at {location}: its config file is present")]
    AlreadyExists { location: String },
    #[error("snapshot {id:?} not found in {location}; list them with `ferry repo snapshots`")]
    SnapshotNotFound { id: String, location: String },
    #[error("snapshot prefix {id:?} is ambiguous in {location}: give more hex digits")]
    AmbiguousSnapshot { id: String, location: String },
    #[error("path {path:?} not found in snapshot {snapshot}")]
    PathNotFound { path: String, snapshot: String },
    #[error("corrupt data in pack {pack} (file {file}): {reason}")]
    Corrupt {
        pack: String,
        file: String,
        reason: String,
    },
    #[error("corrupt repository file {what}: {reason}")]
    CorruptFile { what: String, reason: String },
    #[error("blob {blob} is not in the repository index (needed by {needed_by})")]
    MissingBlob { blob: String, needed_by: String },
    #[error("unsupported repository version {0} (ferry reads versions 1 and 2)")]
    UnsupportedVersion(u32),
    #[error("repository {location} is locked {kind} by {holder}; wait or remove a stale lock")]
    Locked {
        location: String,
        kind: &'static str,
        holder: String,
    },
    #[error(
        "cannot take a lock in {location}: {reason}; the repository looks read-only (a \
         read-only mount, a full file system, no write permission): pass --no-lock to read \
         from it without locking"
    )]
    LockNotWritable { location: String, reason: String },
    #[error(
        "tree {tree} (directory {path} of the snapshot) cannot be restored safely: {problem}; \
         nothing is written through it. `ferry repo check` lists such trees; \
         `--exclude {path}` restores the rest of the snapshot"
    )]
    UnsafeTree {
        tree: String,
        path: String,
        problem: String,
    },
    /// A restore that restored everything it could; the summary lists what it could not.
    #[error("{}", crate::restore_report::incomplete_message(.0))]
    Incomplete(Box<crate::restore_report::RestoreSummary>),
    #[error("check found {0} error(s)")]
    CheckFailed(usize),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

impl RepoError {
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> RepoError {
        RepoError::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

pub type Result<T, E = RepoError> = std::result::Result<T, E>;
