//! A restic-format (repository version 2) backup repository: keys, crypto, chunker, packs,
//! index, trees, snapshots, storage backends, and the backup and restore engines.
//! It knows nothing of Kubernetes.

pub mod backend;
pub mod backup;
pub mod check;
pub mod chunker;
pub mod compression;
pub mod config;
pub mod crypto;
pub mod error;
pub mod forget;
mod fsmeta;
pub mod fuzzing;
pub mod gostr;
pub mod handmade;
pub mod id;
pub mod index;
pub mod kdf;
pub mod keyfile;
pub mod lock;
mod ls;
pub mod pack;
mod prefetch;
pub mod prune;
pub mod repository;
pub mod restore;
mod restore_report;
pub mod snapshot;
pub mod stats;
pub mod sys;
pub mod targets;
#[cfg(test)]
mod test_bytes;
pub mod tree;
mod usage;
mod xattr;

pub use backup::{BackupOptions, BackupSource, BackupSummary};
pub use error::{RepoError, Result};
pub use id::Id;
pub use repository::Repository;
pub use restore::{
    DamagedEntry, DirectWrites, RestoreFilter, RestoreOptions, RestoreProgress, RestoreSummary,
    RestoreTarget,
};
pub use snapshot::Snapshot;
