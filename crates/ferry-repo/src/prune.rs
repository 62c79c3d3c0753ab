//! `prune`: removes data no snapshot uses. Under an exclusive lock it finds the blobs the
//! snapshots use, then keeps packs whose blobs are all used, deletes packs none of whose
//! blobs is used (and packs no index names, left by interrupted backups), and repacks the
//! rest: their used blobs are copied (verified, still sealed and compressed as they were)
//! into new packs. Order, so that a crash at any point loses nothing: new packs, then a new
//! index naming every pack kept or written, then the old index files go, then the packs.
//! Every pack that still holds a used blob stays readable until the new index is stored.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use crate::backend::{FileType, Handle};
use crate::error::{RepoError, Result};
use crate::id::Id;
use crate::index::{IndexBlobJson, IndexJson, IndexPackJson};
use crate::pack::{BlobType, PackBuilder};
use crate::repository::{Repository, decode_blob};
use crate::restore::{ProgressFn, RestoreProgress};

/// Packs written by repacking are cut at this size (as backup's).
const PACK_SIZE: usize = 16 << 20;
/// Packs per new index file.
const PACKS_PER_INDEX: usize = 2000;

#[derive(Debug, Clone, Copy, Default)]
pub struct PruneOptions {
    /// Work out and report what would happen; change nothing.
    pub dry_run: bool,
}

/// What prune found and did (or, in a dry run, would do). Bytes are stored sizes.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PruneReport {
    pub dry_run: bool,
    pub snapshots: usize,
    pub blobs_used: u64,
    pub bytes_used: u64,
    pub blobs_unused: u64,
    pub bytes_unused: u64,
    /// Packs all of whose blobs are used: untouched.
    pub packs_kept: u64,
    pub bytes_kept: u64,
    /// Packs with used and unused blobs: their used blobs move to new packs.
    pub packs_repacked: u64,
    pub bytes_repacked_packs: u64,
    pub blobs_repacked: u64,
    pub bytes_repacked_blobs: u64,
    /// Packs without a used blob.
    pub packs_unused: u64,
    pub bytes_unused_packs: u64,
    /// Packs no index names (left by an interrupted backup).
    pub packs_unreferenced: u64,
    pub bytes_unreferenced: u64,
    /// New packs written by repacking.
    pub packs_written: u64,
    pub bytes_written: u64,
    pub index_files_written: u64,
    pub index_files_removed: u64,
    /// Stored bytes removed minus bytes written.
    pub bytes_freed: u64,
}

/// Where one copy of a blob lies.
#[derive(Debug, Clone)]
struct Entry {
    blob: IndexBlobJson,
}

/// prune's plan: the index files, the packs with their blobs, what happens to each.
struct Plan {
    index_files: Vec<Id>,
    /// Kept packs with every blob the index lists for them.
    keep: BTreeMap<Id, Vec<IndexBlobJson>>,
    /// Packs to repack, with their used blobs.
    repack: BTreeMap<Id, Vec<IndexBlobJson>>,
    /// Packs to delete (unused, repacked, unreferenced).
    delete: Vec<Id>,
}

impl Repository {
    /// Removes unreferenced data; see the module documentation for the order of writes.
    pub async fn prune(&self, options: PruneOptions, progress: ProgressFn) -> Result<PruneReport> {
        let lock = self.lock(true).await?;
        let r = self.prune_locked(options, progress).await;
        lock.release().await;
        r
    }

    async fn prune_locked(
        &self,
        options: PruneOptions,
        progress: ProgressFn,
    ) -> Result<PruneReport> {
        let mut report = PruneReport {
            dry_run: options.dry_run,
            ..Default::default()
        };
        // Every snapshot must be readable: an unreadable one's data would look unused.
        let snapshots = self.snapshots().await?;
        report.snapshots = snapshots.len();
        self.invalidate_index().await;
        let used = self.used_blobs(&snapshots).await?;
        let (plan, stored) = self.plan(&used, &mut report).await?;

        if options.dry_run {
            report.bytes_freed = report
                .bytes_unused_packs
                .saturating_add(report.bytes_unreferenced)
                .saturating_add(report.bytes_repacked_packs)
                .saturating_sub(report.bytes_repacked_blobs);
            return Ok(report);
        }

        // 1. New packs holding the used blobs of the packs to repack.
        let written = self.repack(&plan.repack, &mut report, progress).await?;
        // 2. A new index for everything that stays.
        let mut packs: Vec<IndexPackJson> = plan
            .keep
            .iter()
            .map(|(id, blobs)| IndexPackJson {
                id: *id,
                blobs: blobs.clone(),
            })
            .collect();
        packs.extend(written);
        for chunk in packs.chunks(PACKS_PER_INDEX) {
            let idx = IndexJson {
                supersedes: Vec::new(),
                packs: chunk.to_vec(),
            };
            let json = serde_json::to_vec(&idx).expect("index serializes");
            self.save_unpacked(FileType::Index, json).await?;
            report.index_files_written += 1;
        }
        // 3. The old index files, now that the new one names every pack still needed.
        for id in &plan.index_files {
            self.backend()
                .remove(&Handle::new(FileType::Index, id.to_hex()))
                .await?;
            report.index_files_removed += 1;
        }
        self.invalidate_index().await;
        // 4. Packs nothing names any more.
        let backend = self.backend().clone();
        futures::stream::iter(plan.delete.iter().copied())
            .map(|id| {
                let backend = backend.clone();
                async move {
                    backend
                        .remove(&Handle::new(FileType::Pack, id.to_hex()))
                        .await
                }
            })
            .buffer_unordered(8)
            .try_collect::<Vec<()>>()
            .await?;
        let removed: u64 = plan
            .delete
            .iter()
            .map(|id| stored.get(id).copied().unwrap_or(0))
            .sum();
        report.bytes_freed = removed.saturating_sub(report.bytes_written);
        Ok(report)
    }

    /// Every index file's id and contents.
    async fn index_files(&self) -> Result<Vec<(Id, IndexJson)>> {
        let ids = self.list_ids(FileType::Index).await?;
        futures::stream::iter(ids)
            .map(|id| async move {
                let plain = self.load_unpacked(FileType::Index, &id).await?;
                let idx: IndexJson =
                    serde_json::from_slice(&plain).map_err(|e| RepoError::CorruptFile {
                        what: format!("index/{id}"),
                        reason: e.to_string(),
                    })?;
                Ok((id, idx))
            })
            .buffered(8)
            .try_collect()
            .await
    }

    /// Decides each pack's fate. Fails, changing nothing, when a used blob has no copy in a
    /// stored pack.
    async fn plan(
        &self,
        used: &HashSet<(BlobType, Id)>,
        report: &mut PruneReport,
    ) -> Result<(Plan, HashMap<Id, u64>)> {
        let files = self.index_files().await?;
        let stored: HashMap<Id, u64> = self
            .backend()
            .list(FileType::Pack)
            .await?
            .into_iter()
            .filter_map(|(n, size)| n.parse().ok().map(|id| (id, size)))
            .collect();
        // Each pack's blobs, from every index file naming it (duplicates merged).
        let mut packs: BTreeMap<Id, Vec<Entry>> = BTreeMap::new();
        for (_, f) in &files {
            for p in &f.packs {
                let list = packs.entry(p.id).or_default();
                for b in &p.blobs {
                    if !list.iter().any(|e| {
                        e.blob.id == b.id && e.blob.kind == b.kind && e.blob.offset == b.offset
                    }) {
                        list.push(Entry { blob: b.clone() });
                    }
                }
            }
        }
        // One copy of each used blob, in a stored pack; prefer packs kept whole (all of
        // whose blobs are used), so fewer bytes move.
        let fully_used = |id: &Id| {
            packs[id]
                .iter()
                .all(|e| used.contains(&(e.blob.kind, e.blob.id)))
        };
        let mut order: Vec<Id> = packs
            .keys()
            .copied()
            .filter(|id| stored.contains_key(id))
            .collect();
        order.sort_by_key(|id| (!fully_used(id), *id));
        let mut chosen: HashMap<(BlobType, Id), Id> = HashMap::new();
        for pack in &order {
            for e in &packs[pack] {
                let k = (e.blob.kind, e.blob.id);
                if used.contains(&k) {
                    chosen.entry(k).or_insert(*pack);
                }
            }
        }
        for k in used {
            if !chosen.contains_key(k) {
                let what = match packs
                    .iter()
                    .find(|(_, list)| list.iter().any(|e| (e.blob.kind, e.blob.id) == *k))
                {
                    Some((pack, _)) => format!("its pack {pack} is missing from the repository"),
                    None => "it is in no index".to_string(),
                };
                return Err(RepoError::Invalid(format!(
                    "{} blob {} is used by a snapshot but {what}; prune changed nothing: run `ferry repo check`",
                    k.0, k.1
                )));
            }
        }

        let mut plan = Plan {
            index_files: files.iter().map(|(id, _)| *id).collect(),
            keep: BTreeMap::new(),
            repack: BTreeMap::new(),
            delete: Vec::new(),
        };
        for (pack, entries) in &packs {
            let Some(&size) = stored.get(pack) else {
                // Named by the index but gone, and nothing used lies only there: it just
                // drops out of the index.
                continue;
            };
            let mine: Vec<IndexBlobJson> = entries
                .iter()
                .filter(|e| chosen.get(&(e.blob.kind, e.blob.id)) == Some(pack))
                .map(|e| e.blob.clone())
                .collect();
            for e in entries {
                if chosen.get(&(e.blob.kind, e.blob.id)) == Some(pack) {
                    report.blobs_used += 1;
                    report.bytes_used += e.blob.length as u64;
                } else {
                    report.blobs_unused += 1;
                    report.bytes_unused += e.blob.length as u64;
                }
            }
            if mine.len() == entries.len() {
                report.packs_kept += 1;
                report.bytes_kept += size;
                plan.keep.insert(*pack, mine);
            } else if mine.is_empty() {
                report.packs_unused += 1;
                report.bytes_unused_packs += size;
                plan.delete.push(*pack);
            } else {
                report.packs_repacked += 1;
                report.bytes_repacked_packs += size;
                report.blobs_repacked += mine.len() as u64;
                report.bytes_repacked_blobs += mine.iter().map(|b| b.length as u64).sum::<u64>();
                plan.delete.push(*pack);
                plan.repack.insert(*pack, mine);
            }
        }
        for (pack, size) in &stored {
            if !packs.contains_key(pack) {
                report.packs_unreferenced += 1;
                report.bytes_unreferenced += size;
                plan.delete.push(*pack);
            }
        }
        Ok((plan, stored))
    }

    /// Copies the used blobs of `repack` into new packs; returns their index entries.
    async fn repack(
        &self,
        repack: &BTreeMap<Id, Vec<IndexBlobJson>>,
        report: &mut PruneReport,
        progress: ProgressFn,
    ) -> Result<Vec<IndexPackJson>> {
        let total: u64 = repack.values().flatten().map(|b| b.length as u64).sum();
        let mut done = RestoreProgress {
            total_bytes: total,
            bytes_done: 0,
            total_files: repack.len() as u64,
            files_done: 0,
        };
        progress(&done);
        let mut builders = [PackBuilder::default(), PackBuilder::default()];
        let mut written: Vec<IndexPackJson> = Vec::new();
        for (pack, blobs) in repack {
            let raw = self
                .backend()
                .load(&Handle::new(FileType::Pack, pack.to_hex()), None)
                .await?;
            let key = self.key().clone();
            let (raw, blobs_owned) = (Arc::new(raw), blobs.clone());
            let pack_id = *pack;
            // Verify each blob before it moves: a damaged blob must not be copied as good.
            let checked = {
                let raw = raw.clone();
                crate::repository::blocking(move || -> Result<()> {
                    for b in &blobs_owned {
                        let end = b.offset + b.length as u64;
                        if end > raw.len() as u64 {
                            return Err(RepoError::Corrupt {
                                pack: pack_id.to_hex(),
                                file: format!("{} blob {}", b.kind, b.id),
                                reason: "the pack is shorter than the index says".into(),
                            });
                        }
                        let sealed = &raw[b.offset as usize..end as usize];
                        decode_blob(&key, sealed, b.uncompressed_length.unwrap_or(0), &b.id)
                            .map_err(|reason| RepoError::Corrupt {
                                pack: pack_id.to_hex(),
                                file: format!("{} blob {}", b.kind, b.id),
                                reason: format!("{reason}; prune stopped before deleting anything"),
                            })?;
                    }
                    Ok(())
                })
                .await
            };
            checked?;
            for b in blobs {
                let sealed = &raw[b.offset as usize..(b.offset + b.length as u64) as usize];
                let builder = &mut builders[(b.kind == BlobType::Tree) as usize];
                builder.add(b.id, b.kind, sealed, b.uncompressed_length);
                if builder.len() >= PACK_SIZE {
                    let full = std::mem::take(builder);
                    written.push(self.store_pack(full, report).await?);
                }
                done.bytes_done += b.length as u64;
            }
            done.files_done += 1;
            progress(&done);
        }
        for b in builders {
            if !b.is_empty() {
                written.push(self.store_pack(b, report).await?);
            }
        }
        Ok(written)
    }

    async fn store_pack(
        &self,
        builder: PackBuilder,
        report: &mut PruneReport,
    ) -> Result<IndexPackJson> {
        let (bytes, blobs) = builder.finish(self.key());
        let id = Id::hash(&bytes);
        report.packs_written += 1;
        report.bytes_written += bytes.len() as u64;
        self.backend()
            .save(
                &Handle::new(FileType::Pack, id.to_hex()),
                Bytes::from(bytes),
            )
            .await?;
        Ok(IndexPackJson::from_packed(id, &blobs))
    }
}
