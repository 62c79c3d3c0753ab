//! Listing a snapshot's entries.

use crate::error::Result;
use crate::gostr;
use crate::id::Id;
use crate::repository::Repository;
use crate::snapshot::Snapshot;
use crate::tree::Node;

impl Repository {
    /// Every entry below `subpath` (or the root) with its path ("/a/b"), depth first, sorted.
    pub async fn list_files(
        &self,
        snapshot: &Snapshot,
        subpath: Option<&str>,
    ) -> Result<Vec<(String, Node)>> {
        let mut out = Vec::new();
        let (prefix, root) = match subpath.filter(|s| !s.trim_matches('/').is_empty()) {
            None => (String::new(), Some(snapshot.tree)),
            Some(sp) => {
                let node = self.find_node(snapshot, sp).await?.expect("non-empty path");
                let p = format!("/{}", sp.trim_matches('/'));
                let sub = node.subtree;
                out.push((p.clone(), node));
                (p, sub)
            }
        };
        let mut stack: Vec<(String, Id)> = root.map(|r| (prefix, r)).into_iter().collect();
        while let Some((dir, id)) = stack.pop() {
            let tree = self.load_tree(&id).await?;
            let mut subdirs = Vec::new();
            for node in tree.nodes {
                let name = match std::str::from_utf8(&node.name) {
                    Ok(s) => s.to_string(),
                    Err(_) => gostr::quote(&node.name),
                };
                let path = format!("{dir}/{name}");
                if let Some(sub) = node.subtree {
                    subdirs.push((path.clone(), sub));
                }
                out.push((path, node));
            }
            stack.extend(subdirs.into_iter().rev());
        }
        Ok(out)
    }
}
