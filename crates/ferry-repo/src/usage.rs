//! Which blobs snapshots use: every tree reachable from their roots and every data blob
//! those trees' files name. prune keeps exactly these; stats' raw-data mode counts them.

use std::collections::HashSet;

use futures::StreamExt;

use crate::error::{RepoError, Result};
use crate::id::Id;
use crate::pack::BlobType;
use crate::repository::Repository;
use crate::snapshot::Snapshot;

/// Trees loaded at once while walking.
const TREES_AT_ONCE: usize = 16;

impl Repository {
    /// The blobs `snapshots` use. A tree that cannot be loaded is an error naming it and the
    /// snapshot: what deletes data must not guess what an unreadable tree referenced.
    pub async fn used_blobs(&self, snapshots: &[Snapshot]) -> Result<HashSet<(BlobType, Id)>> {
        let mut used: HashSet<(BlobType, Id)> = HashSet::new();
        let mut level: Vec<(Id, Id)> = Vec::new();
        for s in snapshots {
            if used.insert((BlobType::Tree, s.tree)) {
                level.push((s.tree, s.id));
            }
        }
        while !level.is_empty() {
            let loaded: Vec<Result<(crate::tree::Tree, Id)>> = futures::stream::iter(level)
                .map(|(tree, snap)| async move {
                    self.load_tree(&tree).await.map(|t| (t, snap)).map_err(|e| {
                        RepoError::CorruptFile {
                            what: format!("tree {tree} of snapshot {}", snap.short()),
                            reason: e.to_string(),
                        }
                    })
                })
                .buffer_unordered(TREES_AT_ONCE)
                .collect()
                .await;
            level = Vec::new();
            for r in loaded {
                let (tree, snap) = r?;
                for node in tree.nodes {
                    if let Some(sub) = node.subtree
                        && used.insert((BlobType::Tree, sub))
                    {
                        level.push((sub, snap));
                    }
                    for b in node.content.unwrap_or_default() {
                        used.insert((BlobType::Data, b));
                    }
                }
            }
        }
        Ok(used)
    }
}
