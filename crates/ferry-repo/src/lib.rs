//! A restic-format (repository version 2) backup repository: keys, crypto, chunker, packs,
//! index, trees, snapshots, storage backends, and the backup and restore engines.
//! It knows nothing of Kubernetes.

pub mod backend;
pub mod chunker;
