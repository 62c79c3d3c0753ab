//! `stats`, in restic 0.14's two main modes:
//! - restore-size: per snapshot, every node counts as a file and each file's size counts
//!   once per (device, inode) — what a restore writes;
//! - raw-data: the distinct blobs the snapshots use and their stored size.

use std::collections::HashSet;

use futures::StreamExt;

use crate::error::Result;
use crate::id::Id;
use crate::repository::Repository;
use crate::snapshot::Snapshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatsMode {
    RestoreSize,
    RawData,
}

/// restic's `stats --json` fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    pub total_size: u64,
    pub total_file_count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_blob_count: Option<u64>,
    pub snapshots_count: u64,
}

/// What restoring one tree writes: nodes, regular files and bytes (each (device, inode)
/// counted once).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreSize {
    pub nodes: u64,
    pub files: u64,
    pub bytes: u64,
}

impl Repository {
    pub async fn stats(&self, snapshots: &[Snapshot], mode: StatsMode) -> Result<Stats> {
        let mut stats = Stats {
            snapshots_count: snapshots.len() as u64,
            ..Default::default()
        };
        match mode {
            StatsMode::RestoreSize => {
                for s in snapshots {
                    let r = self.restore_size(s.tree).await?;
                    stats.total_file_count += r.nodes;
                    stats.total_size += r.bytes;
                }
            }
            StatsMode::RawData => {
                let used = self.used_blobs(snapshots).await?;
                let index = self.index().await?;
                stats.total_blob_count = Some(used.len() as u64);
                stats.total_size = used
                    .iter()
                    .filter_map(|(kind, id)| index.get(*kind, id))
                    .map(|loc| loc.length as u64)
                    .sum();
            }
        }
        Ok(stats)
    }

    /// The restore size of the tree `root` (a snapshot's, or a directory's in it).
    pub async fn restore_size(&self, root: Id) -> Result<RestoreSize> {
        let mut size = RestoreSize::default();
        let mut inodes: HashSet<(u64, u64)> = HashSet::new();
        let mut level = vec![root];
        while !level.is_empty() {
            let trees: Vec<Result<crate::tree::Tree>> = futures::stream::iter(level)
                .map(|id| async move { self.load_tree(&id).await })
                .buffered(16)
                .collect()
                .await;
            level = Vec::new();
            for tree in trees {
                for node in tree?.nodes {
                    size.nodes += 1;
                    if node.kind == "file" {
                        size.files += 1;
                    }
                    if node.inode == 0 || inodes.insert((node.inode, node.device_id)) {
                        size.bytes += node.size;
                    }
                    if let Some(sub) = node.subtree {
                        level.push(sub);
                    }
                }
            }
        }
        Ok(size)
    }
}
