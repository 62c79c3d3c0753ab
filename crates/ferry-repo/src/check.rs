//! `check`: the repository's structure (index against packs, snapshots' trees against the
//! index, file sizes against their content) and, with `read_data`, every pack's bytes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;

use crate::backend::{FileType, Handle};
use crate::crypto;
use crate::error::Result;
use crate::id::Id;
use crate::pack::{self, BlobType};
use crate::repository::{Repository, decode_blob};
use crate::restore::{ProgressFn, RestoreProgress};

#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// Download every pack and verify every blob.
    pub read_data: bool,
    /// Take no repository lock (for read-only repositories).
    pub no_lock: bool,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CheckReport {
    pub snapshots: usize,
    pub trees: usize,
    pub packs: usize,
    pub blobs: usize,
    pub packs_read: usize,
    /// Problems that make data unrestorable or wrong.
    pub errors: Vec<String>,
    /// Things worth knowing that lose nothing (e.g. unreferenced packs).
    pub warnings: Vec<String>,
}

impl Repository {
    pub async fn check(&self, options: CheckOptions) -> Result<CheckReport> {
        self.check_with_progress(options, Arc::new(|_: &RestoreProgress| {}))
            .await
    }

    /// [`Repository::check`] reporting, with `read_data`, the packs and bytes read so far
    /// against all of them (known from the listing before reading starts).
    pub async fn check_with_progress(
        &self,
        options: CheckOptions,
        progress: ProgressFn,
    ) -> Result<CheckReport> {
        let lock = match options.no_lock {
            true => None,
            false => Some(self.lock(false).await?),
        };
        let r = self.check_locked(options, progress).await;
        if let Some(lock) = lock {
            lock.release().await;
        }
        r
    }

    async fn check_locked(
        &self,
        options: CheckOptions,
        progress: ProgressFn,
    ) -> Result<CheckReport> {
        let mut rep = CheckReport::default();
        self.invalidate_index().await;
        let index = self.index().await?;
        rep.blobs = index.blob_count();
        let stored: HashMap<Id, u64> = self
            .backend()
            .list(FileType::Pack)
            .await?
            .into_iter()
            .filter_map(|(n, s)| n.parse().ok().map(|i| (i, s)))
            .collect();
        rep.packs = stored.len();

        // Expected pack sizes from the index.
        let mut expect: HashMap<u32, (u64, usize)> = HashMap::new();
        for (_, _, loc) in index.iter() {
            let e = expect.entry(loc.pack).or_default();
            e.0 += loc.length as u64;
            e.1 += 1;
        }
        for (n, id) in index.packs.iter().enumerate() {
            let Some((blob_bytes, _)) = expect.get(&(n as u32)) else {
                continue;
            };
            match stored.get(id) {
                None => rep.errors.push(format!(
                    "pack {id}: in the index but missing from the repository"
                )),
                Some(size) if *size <= *blob_bytes => rep.errors.push(format!(
                    "pack {id}: {size} bytes, too small for its indexed blobs ({blob_bytes} bytes)"
                )),
                Some(_) => {}
            }
        }
        for id in stored.keys() {
            if !index.has_pack(id) {
                rep.warnings.push(format!(
                    "pack {id}: not referenced by any index (prune removes it)"
                ));
            }
        }

        // Snapshots and their trees.
        let (snaps, unreadable) = self.snapshots_skipping_unreadable().await?;
        for (id, e) in unreadable {
            rep.errors.push(format!("snapshot {id}: {e}"));
        }
        rep.snapshots = snaps.len();
        let mut seen: HashSet<Id> = HashSet::new();
        let mut users: HashMap<Id, String> = HashMap::new();
        let mut stack: Vec<(String, Id)> = snaps
            .iter()
            .map(|s| (format!("snapshot {}:", s.id.short()), s.tree))
            .collect();
        while let Some((path, id)) = stack.pop() {
            if !seen.insert(id) {
                continue;
            }
            if !index.contains(BlobType::Tree, &id) {
                rep.errors
                    .push(format!("tree {id} ({path}): not in the index"));
                continue;
            }
            let tree = match self.load_tree(&id).await {
                Ok(t) => t,
                Err(e) => {
                    rep.errors.push(format!("tree {id} ({path}): {e}"));
                    continue;
                }
            };
            rep.trees += 1;
            // Names a restore refuses: invalid ones, and duplicates (which could make a
            // restore write through a symlink of the same name).
            for problem in crate::tree::entry_problems(&tree.nodes) {
                rep.errors.push(format!(
                    "tree {id} ({path}): {problem}; restore refuses this tree"
                ));
            }
            for node in tree.nodes {
                let p = format!("{path}/{}", node.name_lossy());
                match node.kind.as_str() {
                    "file" => {
                        let Some(content) = &node.content else {
                            rep.errors.push(format!("file {p}: no content list"));
                            continue;
                        };
                        let mut total = 0u64;
                        for b in content {
                            match index.get(BlobType::Data, b) {
                                Some(loc) => total += loc.plain_len(),
                                None => rep
                                    .errors
                                    .push(format!("file {p}: data blob {b} not in the index")),
                            }
                            if options.read_data {
                                users.entry(*b).or_insert_with(|| p.clone());
                            }
                        }
                        if total != node.size
                            && content.iter().all(|b| index.contains(BlobType::Data, b))
                        {
                            rep.errors.push(format!(
                                "file {p}: size {} but its content is {total} bytes",
                                node.size
                            ));
                        }
                    }
                    "dir" => match node.subtree {
                        Some(sub) => stack.push((p, sub)),
                        None => rep.errors.push(format!("dir {p}: no subtree")),
                    },
                    _ => {}
                }
            }
        }

        if options.read_data {
            let users = Arc::new(users);
            let key = self.key().clone();
            let backend = self.backend().clone();
            let ids: Vec<Id> = stored.keys().copied().collect();
            let done = Arc::new(std::sync::Mutex::new(RestoreProgress {
                total_bytes: stored.values().sum(),
                bytes_done: 0,
                total_files: ids.len() as u64,
                files_done: 0,
            }));
            progress(&done.lock().unwrap().clone());
            let results: Vec<Vec<String>> = futures::stream::iter(ids)
                .map(|id| {
                    let backend = backend.clone();
                    let key = key.clone();
                    let users = users.clone();
                    let index = index.clone();
                    let (done, progress) = (done.clone(), progress.clone());
                    let size = stored[&id];
                    async move {
                        let h = Handle::new(FileType::Pack, id.to_hex());
                        let data = match backend.load(&h, None).await {
                            Ok(d) => d,
                            Err(e) => return vec![format!("pack {id}: cannot read: {e}")],
                        };
                        let errs = tokio::task::spawn_blocking(move || {
                            verify_pack(&key, id, &data, &users, &index)
                        })
                        .await
                        .expect("verify panicked");
                        let now = {
                            let mut d = done.lock().unwrap();
                            d.bytes_done += size;
                            d.files_done += 1;
                            d.clone()
                        };
                        progress(&now);
                        errs
                    }
                })
                .buffer_unordered(4)
                .collect()
                .await;
            rep.packs_read = results.len();
            for r in results {
                rep.errors.extend(r);
            }
        }
        Ok(rep)
    }
}

fn verify_pack(
    key: &crypto::Key,
    id: Id,
    data: &[u8],
    users: &HashMap<Id, String>,
    index: &crate::index::MasterIndex,
) -> Vec<String> {
    let mut errs = Vec::new();
    if Id::hash(data) != id {
        errs.push(format!(
            "pack {id}: content does not match its name (SHA-256); the pack is damaged"
        ));
    }
    let blobs = match pack::parse_header(key, data, data.len() as u64) {
        Ok(b) => b,
        Err(e) => {
            errs.push(format!("pack {id}: header: {e}"));
            return errs;
        }
    };
    for b in blobs {
        if let Some(loc) = index.get(b.kind, &b.id)
            && index.pack_id(loc.pack) == id
            && (loc.offset as u64 != b.offset || loc.length != b.length)
        {
            errs.push(format!(
                "pack {id}: blob {} lies at {}+{} but the index says {}+{}",
                b.id, b.offset, b.length, loc.offset, loc.length
            ));
        }
        let sealed = &data[b.offset as usize..(b.offset + b.length as u64) as usize];
        if let Err(reason) = decode_blob(key, sealed, b.uncompressed_length.unwrap_or(0), &b.id) {
            let who = users
                .get(&b.id)
                .map(|p| format!(" (used by file {p})"))
                .unwrap_or_default();
            errs.push(format!("pack {id}: {reason}{who}"));
        }
    }
    errs
}
