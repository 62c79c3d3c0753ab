//! The restore engine. Walks the snapshot's trees, creates directories, links and empty files,
//! then fetches the needed pack ranges concurrently, decrypts/decompresses/verifies on worker
//! threads and writes every blob with positional writes wherever it belongs, in any order.
//! Memory is bounded by a byte budget for fetched-but-unwritten data and by planning in batches.
//!
//! Safety: everything is created below the target through directory descriptors, never
//! following a symlink (see `target`); trees with invalid or duplicate names are refused.
//! Damage: a blob that cannot be read or verified costs only the files that use it; they are
//! removed and listed, every other file is restored. A file of several blobs is written under
//! a temporary name and renamed when complete, so a killed restore never leaves a file of
//! full size with wrong content under its real name.

mod batch;
mod filter;
mod target;
mod verify;
mod write;

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use futures::StreamExt;

pub use crate::restore_report::{DamagedEntry, ProgressFn, RestoreProgress, RestoreSummary};
pub use filter::{PatternError, RestoreFilter};

use crate::backend::{FileType, Handle, RangeData};
use crate::error::{RepoError, Result};
use crate::fsmeta;
use crate::id::Id;
use crate::id::sha256_lanes::LANES;
use crate::index::{IdMap, MasterIndex};
use crate::pack::BlobType;
use crate::repository::{Repository, blob_id_mismatch, decode_blob_unhashed_to};
use crate::restore_report::Warnings;
use crate::snapshot::Snapshot;
use crate::tree::{self, Node};
use batch::{
    BlobTarget, Fault, FileTarget, PlannedBlob, RangeJob, Scratch, Segment, Shared, Unhashed,
    WRITE_BATCH,
};
use target::TargetDir;
use write::{Wait, direct_padding, finish_one, is_zero, write_segments};

/// Where a snapshot goes.
#[derive(Debug, Clone)]
pub enum RestoreTarget {
    /// Recreate the tree (or the part under `subpath`) below `path`.
    Directory {
        path: PathBuf,
        subpath: Option<String>,
    },
    /// Write the snapshot's single file (a block volume image) onto a device or file in place.
    Device { path: PathBuf },
}

#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// Pack ranges fetched at once.
    pub fetch_concurrency: usize,
    /// Threads decrypting, decompressing and writing; 0 sizes them to the machine (see
    /// [`RestoreOptions::workers_for`]).
    pub workers: usize,
    /// Bytes of fetched, not yet written pack data allowed in memory.
    pub memory_budget: usize,
    /// Blobs planned per batch (bounds the plan's memory for huge snapshots).
    pub batch_blobs: usize,
    /// Which entries to restore (`--include` / `--exclude`); everything by default.
    pub filter: RestoreFilter,
    /// Read every restored file back and compare it with the snapshot.
    pub verify: bool,
    /// Take no repository lock (for read-only repositories).
    pub no_lock: bool,
    /// Files of several blobs kept open between writes; beyond this, a file is reopened for
    /// each write (bounds descriptors when many large files are restored at once).
    pub open_files: usize,
    /// Flush the restored tree to stable storage before returning (`syncfs` of the target's
    /// file system; a device is always fsynced). Without it the data may still sit in the
    /// page cache when the restore reports success, as after `tar -x` or `restic restore`.
    pub flush: bool,
    /// Whether long runs of large files are written past the page cache (`O_DIRECT`).
    pub direct_writes: DirectWrites,
}

/// When a restore writes the page-aligned middle of long runs (large files) with `O_DIRECT`.
/// Direct writes spare the kernel's page-cache copy and keep the node's cache for its
/// workloads, but each waits for the device: a restore that ends with a flush waits for it
/// anyway, one that does not would wait where the page cache would have let it go on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DirectWrites {
    /// When the restore ends with a flush (`flush`, the data mover) or writes a device.
    #[default]
    Auto,
    Always,
    Never,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions {
            fetch_concurrency: 8,
            workers: 0,
            memory_budget: 96 << 20,
            batch_blobs: 200_000,
            filter: RestoreFilter::default(),
            verify: false,
            no_lock: false,
            open_files: 256,
            flush: false,
            direct_writes: DirectWrites::Auto,
        }
    }
}

impl RestoreOptions {
    /// The worker count for a restore whose writes wait for the device (`waits`: direct
    /// writes, writeback started for a flush, or a target the data nearly fills) or not:
    /// one per CPU, twice that when they wait, since a worker blocked in a write leaves its
    /// CPU idle (docs/repository.md, "How a restore writes", has the figures).
    pub fn workers_for(&self, waits: bool) -> usize {
        if self.workers > 0 {
            return self.workers;
        }
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        if waits { cpus * 2 } else { cpus }
    }
}

/// Range reads never span more than this.
const MAX_RANGE: u64 = 8 << 20;
/// A gap larger than this between needed blobs of one pack starts a new range.
const MAX_GAP: u64 = 1 << 20;

/// A directory whose tree is still to be loaded.
struct DirToWalk {
    /// Relative to the target.
    rel: PathBuf,
    /// Its path in the snapshot ("/a/b"), for filters and messages.
    snap: PathBuf,
    tree: Id,
    depth: usize,
}

/// A directory's entries, loaded.
struct LoadedDir {
    rel: PathBuf,
    snap: PathBuf,
    tree: Option<Id>,
    depth: usize,
    nodes: Vec<Node>,
}

/// A directory that gets its metadata at the end.
struct DirToFinish {
    rel: PathBuf,
    node: Node,
    depth: usize,
    /// Only walked through for include patterns: removed again when nothing was restored
    /// below it (and this restore created it).
    leading: bool,
    created: bool,
}

/// The state of one restore run across batches.
struct Run<'a> {
    repo: &'a Repository,
    index: Arc<MasterIndex>,
    opts: RestoreOptions,
    progress: ProgressFn,
    done: RestoreProgress,
    summary: RestoreSummary,
    target: Option<Arc<TargetDir>>,
    warnings: Arc<Warnings>,
    /// Files waiting for content, and the blob count they need.
    pending: Vec<FileTarget>,
    pending_blobs: usize,
    /// (device, inode) of multiply-linked files → first restored path.
    hardlinks: HashMap<(u64, u64), PathBuf>,
    /// (first restored path, link path, the link's node).
    links_to_make: Vec<(PathBuf, PathBuf, Node)>,
    dirs: Vec<DirToFinish>,
    /// Files that could not be restored (hard links to them cannot be made either).
    damaged_files: HashSet<PathBuf>,
    /// Temporary names are `<prefix><n>`: unique per run, recognisable after a crash.
    tmp_prefix: String,
    tmp_count: u64,
}

/// Temporary names of files being restored start with this.
pub const TEMP_PREFIX: &str = ".ferry-restore-";

impl Repository {
    /// Restores `snapshot` to `target`. Entries that cannot be restored because repository
    /// data is damaged or missing (or, with `verify`, files that do not read back right) make
    /// it return [`RepoError::Incomplete`] after everything else was restored.
    pub async fn restore(
        &self,
        snapshot: &Snapshot,
        target: RestoreTarget,
        options: RestoreOptions,
        progress: ProgressFn,
    ) -> Result<RestoreSummary> {
        let lock = match options.no_lock {
            true => None,
            false => Some(self.lock(false).await?),
        };
        let result = self
            .restore_locked(snapshot, target, options, progress)
            .await;
        if let Some(lock) = lock {
            lock.release().await;
        }
        result
    }

    async fn restore_locked(
        &self,
        snapshot: &Snapshot,
        target: RestoreTarget,
        options: RestoreOptions,
        progress: ProgressFn,
    ) -> Result<RestoreSummary> {
        let started = Instant::now();
        let index = self.index().await?;
        tracing::debug!(elapsed = ?started.elapsed(), "restore: index loaded");
        let mut run = Run {
            repo: self,
            index,
            opts: options,
            progress,
            done: RestoreProgress::default(),
            summary: RestoreSummary::default(),
            target: None,
            warnings: Arc::new(Warnings::default()),
            pending: Vec::new(),
            pending_blobs: 0,
            hardlinks: HashMap::new(),
            links_to_make: Vec::new(),
            dirs: Vec::new(),
            damaged_files: HashSet::new(),
            tmp_prefix: format!("{TEMP_PREFIX}{:08x}-", rand::random::<u32>()),
            tmp_count: 0,
        };
        match target {
            RestoreTarget::Directory { path, subpath } => {
                run.restore_directory(snapshot, &path, subpath.as_deref())
                    .await?
            }
            RestoreTarget::Device { path } => run.restore_device(snapshot, &path).await?,
        }
        let flush_seconds = match (&run.target, run.opts.flush) {
            (Some(target), true) => {
                let flushing = Instant::now();
                target
                    .sync_file_system()
                    .map_err(|e| RepoError::io(target.display(Path::new("")), e))?;
                tracing::debug!(took = ?flushing.elapsed(), "restore: flushed");
                Some(flushing.elapsed().as_secs_f64())
            }
            _ => None,
        };
        (run.progress)(&run.done);
        let mut summary = run.summary;
        summary.flush_seconds = flush_seconds;
        summary.seconds = started.elapsed().as_secs_f64();
        summary.total_bytes = run.done.total_bytes;
        summary.warnings = run.warnings.list();
        if summary.damaged.is_empty() && summary.verify_failures.is_empty() {
            Ok(summary)
        } else {
            summary.damaged.sort_by(|a, b| a.path.cmp(&b.path));
            Err(RepoError::Incomplete(Box::new(summary)))
        }
    }

    /// Resolves `subpath` inside a snapshot: the node there (None for the root).
    pub async fn find_node(&self, snapshot: &Snapshot, subpath: &str) -> Result<Option<Node>> {
        let mut tree = snapshot.tree;
        let parts: Vec<&str> = subpath.split('/').filter(|p| !p.is_empty()).collect();
        let mut found = None;
        for (i, part) in parts.iter().enumerate() {
            let t = self.load_tree(&tree).await?;
            let node = t
                .nodes
                .into_iter()
                .find(|n| n.name == part.as_bytes())
                .ok_or_else(|| RepoError::PathNotFound {
                    path: subpath.into(),
                    snapshot: snapshot.id.short(),
                })?;
            if i + 1 < parts.len() {
                tree = node.subtree.ok_or_else(|| RepoError::PathNotFound {
                    path: subpath.into(),
                    snapshot: snapshot.id.short(),
                })?;
            }
            found = Some(node);
        }
        Ok(found)
    }
}

/// The pack and the reason of a failed tree load, for the damage list.
fn tree_fault(e: &RepoError) -> (Option<String>, String) {
    match e {
        RepoError::Corrupt { pack, reason, .. } => (Some(pack.clone()), reason.clone()),
        e => (None, e.to_string()),
    }
}

impl Run<'_> {
    fn target(&self) -> Result<Arc<TargetDir>> {
        self.target
            .clone()
            .ok_or_else(|| RepoError::Invalid("restore: no target directory".into()))
    }

    async fn restore_directory(
        &mut self,
        snapshot: &Snapshot,
        target: &Path,
        subpath: Option<&str>,
    ) -> Result<()> {
        self.target = Some(Arc::new(
            TargetDir::open(target).map_err(|e| RepoError::io(target, e))?,
        ));
        let sub = subpath
            .map(|s| s.trim_matches('/'))
            .filter(|s| !s.is_empty());
        let (root, snap_root) = match sub {
            None => (snapshot.tree, PathBuf::from("/")),
            Some(sp) => {
                let snap_path = Path::new("/").join(sp);
                match self.repo.find_node(snapshot, sp).await? {
                    None => (snapshot.tree, PathBuf::from("/")),
                    Some(node) if node.kind == "dir" => {
                        let tree = node.subtree.ok_or_else(|| RepoError::CorruptFile {
                            what: format!("snapshot {} path {sp}", snapshot.id.short()),
                            reason: "directory without subtree".into(),
                        })?;
                        (tree, snap_path)
                    }
                    Some(node) => {
                        // A single entry: restore it into the target directory.
                        let parent = snap_path.parent().unwrap_or(Path::new("/")).to_path_buf();
                        self.restore_nodes(vec![LoadedDir {
                            rel: PathBuf::new(),
                            snap: parent,
                            tree: None,
                            depth: 0,
                            nodes: vec![node],
                        }])
                        .await?;
                        return self.finish().await;
                    }
                }
            }
        };
        // Breadth-first over trees, loading each level's trees concurrently.
        let mut level = vec![DirToWalk {
            rel: PathBuf::new(),
            snap: snap_root,
            tree: root,
            depth: 0,
        }];
        while !level.is_empty() {
            let repo = self.repo;
            let loaded: Vec<(DirToWalk, Result<tree::Tree>)> = futures::stream::iter(level)
                .map(|d| async move {
                    let t = repo.load_tree(&d.tree).await;
                    (d, t)
                })
                .buffered(16)
                .collect()
                .await;
            let mut dirs = Vec::with_capacity(loaded.len());
            for (d, t) in loaded {
                match t {
                    Ok(t) => dirs.push(LoadedDir {
                        rel: d.rel,
                        snap: d.snap,
                        tree: Some(d.tree),
                        depth: d.depth,
                        nodes: t.nodes,
                    }),
                    // Only this directory's contents are lost: go on with the others.
                    Err(e) => {
                        let (pack, reason) = tree_fault(&e);
                        self.summary.damaged.push(DamagedEntry {
                            path: self.target()?.display(&d.rel).display().to_string(),
                            pack,
                            blob: Some(d.tree.to_hex()),
                            reason: format!("directory contents not restored: {reason}"),
                        });
                    }
                }
            }
            level = self.restore_nodes(dirs).await?;
        }
        self.finish().await
    }

    /// Creates the entries of some directories; returns the subdirectories still to walk.
    async fn restore_nodes(&mut self, dirs: Vec<LoadedDir>) -> Result<Vec<DirToWalk>> {
        let target = self.target()?;
        let mut next = Vec::new();
        for d in dirs {
            let problems = tree::entry_problems(&d.nodes);
            if !problems.is_empty() {
                return Err(RepoError::UnsafeTree {
                    tree: d.tree.map(|t| t.to_hex()).unwrap_or_default(),
                    path: d.snap.display().to_string(),
                    problem: problems.join("; "),
                });
            }
            let dir_fd = target
                .open_dir(&d.rel)
                .map_err(|e| RepoError::io(target.display(&d.rel), e))?;
            for node in d.nodes {
                let name = OsStr::from_bytes(&node.name);
                let rel = d.rel.join(name);
                let snap = d.snap.join(name);
                let sel = self.opts.filter.select(&snap, node.kind == "dir");
                if !sel.restore && !sel.descend {
                    continue;
                }
                let io = |e| RepoError::io(target.display(&rel), e);
                match node.kind.as_str() {
                    "dir" => {
                        let created = target::make_dir(&dir_fd, name).map_err(io)?;
                        match node.subtree {
                            Some(tree) if sel.descend => next.push(DirToWalk {
                                rel: rel.clone(),
                                snap,
                                tree,
                                depth: d.depth + 1,
                            }),
                            Some(_) => {}
                            None => self.summary.damaged.push(DamagedEntry {
                                path: target.display(&rel).display().to_string(),
                                pack: None,
                                blob: None,
                                reason: "directory without a subtree in the snapshot".into(),
                            }),
                        }
                        self.dirs.push(DirToFinish {
                            rel,
                            node,
                            depth: d.depth + 1,
                            leading: !sel.restore,
                            created,
                        });
                    }
                    "file" => self.plan_file(rel, node, false)?,
                    "symlink" => {
                        target::make_symlink(&dir_fd, name, &node.linktarget).map_err(io)?;
                        fsmeta::apply_at(
                            &dir_fd,
                            name,
                            &node,
                            &target.display(&rel),
                            &self.warnings,
                        )
                        .map_err(io)?;
                        self.summary.links += 1;
                    }
                    _ => {
                        let made = fsmeta::special(&node).and_then(|(kind, perm, dev)| {
                            target::make_node(&dir_fd, name, kind, perm, dev)
                        });
                        match made {
                            Ok(()) => fsmeta::apply_at(
                                &dir_fd,
                                name,
                                &node,
                                &target.display(&rel),
                                &self.warnings,
                            )
                            .map_err(io)?,
                            Err(e) => self.warnings.add(format!("special {}", node.kind), || {
                                format!(
                                    "cannot create special file {}: {e}",
                                    target.display(&rel).display()
                                )
                            }),
                        }
                    }
                }
            }
            if self.pending_blobs >= self.opts.batch_blobs {
                self.run_batch().await?;
            }
        }
        Ok(next)
    }

    fn plan_file(&mut self, rel: PathBuf, node: Node, device: bool) -> Result<()> {
        self.done.total_files += 1;
        self.summary.files += 1;
        if node.links > 1 && !device {
            let key = (node.device_id, node.inode);
            if let Some(first) = self.hardlinks.get(&key) {
                self.links_to_make.push((first.clone(), rel, node));
                self.done.files_done += 1;
                return Ok(());
            }
            self.hardlinks.insert(key, rel.clone());
        }
        let blobs = node.content.as_ref().map(|c| c.len()).unwrap_or(0);
        self.done.total_bytes += node.size;
        if blobs == 0 {
            if !device {
                let target = self.target()?;
                let display = target.display(&rel);
                let f = target
                    .create_file(&rel)
                    .map_err(|e| RepoError::io(&display, e))?;
                fsmeta::apply_to_fd(&f, &node, &display, &self.warnings)
                    .map_err(|e| RepoError::io(&display, e))?;
            }
            self.done.files_done += 1;
            return Ok(());
        }
        let tmp = (blobs > 1 && !device).then(|| {
            self.tmp_count += 1;
            rel.with_file_name(format!("{}{}", self.tmp_prefix, self.tmp_count))
        });
        self.pending_blobs += blobs;
        self.pending.push(FileTarget {
            rel,
            node,
            device,
            blobs: blobs as u32,
            len: 0,
            tmp,
            remaining: AtomicU32::new(blobs as u32),
            created: AtomicBool::new(false),
            damaged: OnceLock::new(),
            open: Mutex::new(None),
        });
        Ok(())
    }

    async fn restore_device(&mut self, snapshot: &Snapshot, device: &Path) -> Result<()> {
        // The snapshot must hold one file (possibly below single-entry directories).
        let mut tree = self.repo.load_tree(&snapshot.tree).await?;
        let node = loop {
            if tree.nodes.len() != 1 {
                return Err(RepoError::Invalid(format!(
                    "snapshot {} has {} entries at one level; --target-device needs a snapshot of a single file (a --stdin backup)",
                    snapshot.id.short(),
                    tree.nodes.len()
                )));
            }
            let n = tree.nodes.pop().unwrap();
            match (n.kind.as_str(), n.subtree) {
                ("file", _) => break n,
                ("dir", Some(sub)) => tree = self.repo.load_tree(&sub).await?,
                _ => {
                    return Err(RepoError::Invalid(format!(
                        "snapshot {} holds a {} where --target-device needs a file",
                        snapshot.id.short(),
                        n.kind
                    )));
                }
            }
        };
        let md = std::fs::metadata(device).map_err(|e| RepoError::io(device, e))?;
        if md.is_file() {
            if md.len() != node.size {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(device)
                    .map_err(|e| RepoError::io(device, e))?;
                f.set_len(node.size).map_err(|e| RepoError::io(device, e))?;
            }
        } else {
            let f = std::fs::File::open(device).map_err(|e| RepoError::io(device, e))?;
            let size = device_size(&f).map_err(|e| RepoError::io(device, e))?;
            if size < node.size {
                return Err(RepoError::Invalid(format!(
                    "device {} holds {size} bytes, the snapshot's volume needs {}; use a larger volume",
                    device.display(),
                    node.size
                )));
            }
        }
        self.plan_file(device.to_path_buf(), node, true)?;
        self.finish().await
    }

    async fn finish(&mut self) -> Result<()> {
        tracing::debug!("restore: trees walked");
        self.run_batch().await?;
        // Directories last, deepest first: writing into them changed their times.
        self.dirs.sort_by_key(|d| std::cmp::Reverse(d.depth));
        let dirs = std::mem::take(&mut self.dirs);
        if dirs.is_empty() {
            return Ok(());
        }
        let target = self.target()?;
        for d in dirs {
            let display = target.display(&d.rel);
            let io = |e| RepoError::io(&display, e);
            if d.leading && d.created && target.remove_empty_dir(&d.rel).map_err(io)? {
                continue;
            }
            let fd = target.open_dir(&d.rel).map_err(io)?;
            fsmeta::apply_to_fd(&fd, &d.node, &display, &self.warnings).map_err(io)?;
            self.summary.dirs += 1;
        }
        Ok(())
    }

    async fn run_batch(&mut self) -> Result<()> {
        let mut files = std::mem::take(&mut self.pending);
        self.pending_blobs = 0;
        let mut shared = None;
        if !files.is_empty() {
            let planned = Instant::now();
            let jobs = plan_ranges(&mut files, &self.index);
            let direct_writes = match self.opts.direct_writes {
                DirectWrites::Always => true,
                DirectWrites::Never => false,
                DirectWrites::Auto => self.opts.flush || files.iter().any(|f| f.device),
            };
            tracing::debug!(files = files.len(), ranges = jobs.len(), took = ?planned.elapsed(), "restore: batch planned");
            let bytes: u64 = files.iter().map(|f| f.len).sum();
            let tight = match &self.target {
                Some(t) => fills_the_target(bytes, t.free_bytes().ok()),
                None => false,
            };
            // Writes wait for the disk when the restore flushes or writes directly, and on
            // a target the data would nearly fill: ext4 then writes back what is dirty before
            // it lets a writer go on. A worker that waits leaves its CPU idle.
            let writes_wait = self.opts.flush || direct_writes || tight;
            let batch = Arc::new(Shared {
                key: self.repo.key().clone(),
                files,
                target: self.target.clone(),
                warnings: self.warnings.clone(),
                progress: self.progress.clone(),
                total: Mutex::new(self.done.clone()),
                bytes_done: AtomicU64::new(0),
                bytes_written: AtomicU64::new(0),
                files_done: AtomicU64::new(0),
                failed: AtomicBool::new(false),
                last_report: Mutex::new(Instant::now()),
                scratch: Mutex::new(Vec::new()),
                open_files: AtomicUsize::new(0),
                keep_open: self.opts.open_files,
                start_writeback: self.opts.flush,
                direct_writes: AtomicBool::new(direct_writes),
                buffers: Mutex::new(Vec::new()),
            });
            let executed = Instant::now();
            let workers = self.opts.workers_for(writes_wait);
            tracing::debug!(workers, bytes, tight, "restore: batch workers");
            let result = execute(self.repo, jobs, batch.clone(), &self.opts, workers).await;
            tracing::debug!(took = ?executed.elapsed(), "restore: batch written");
            self.done.bytes_done += batch.bytes_done.load(Ordering::Relaxed);
            self.done.files_done += batch.files_done.load(Ordering::Relaxed);
            self.summary.bytes_written += batch.bytes_written.load(Ordering::Relaxed);
            for f in &batch.files {
                if let Some(fault) = f.damaged.get() {
                    self.summary.files -= 1;
                    self.damaged_files.insert(f.rel.clone());
                    self.summary.damaged.push(DamagedEntry {
                        path: batch.display(&f.rel).display().to_string(),
                        pack: fault.pack.map(|p| p.to_hex()),
                        blob: fault.blob.map(|b| b.to_hex()),
                        reason: fault.reason.clone(),
                    });
                }
            }
            result?;
            shared = Some(batch);
        }
        let mut linked = Vec::new();
        for (src, dst, node) in std::mem::take(&mut self.links_to_make) {
            let target = self.target()?;
            if self.damaged_files.contains(&src) {
                self.summary.files -= 1;
                self.damaged_files.insert(dst.clone());
                self.summary.damaged.push(DamagedEntry {
                    path: target.display(&dst).display().to_string(),
                    pack: None,
                    blob: None,
                    reason: format!(
                        "hard link to {}, which could not be restored",
                        target.display(&src).display()
                    ),
                });
                continue;
            }
            target
                .hard_link(&src, &dst)
                .map_err(|e| RepoError::io(target.display(&dst), e))?;
            linked.push((dst, node));
        }
        if self.opts.verify {
            let mut todo: Vec<(PathBuf, bool, &Node)> = Vec::new();
            if let Some(shared) = &shared {
                todo.extend(
                    shared
                        .files
                        .iter()
                        .filter(|f| f.damaged.get().is_none())
                        .map(|f| (f.rel.clone(), f.device, &f.node)),
                );
            }
            todo.extend(linked.iter().map(|(rel, node)| (rel.clone(), false, node)));
            let files = self.to_verify(todo);
            self.verify_files(files).await;
        }
        (self.progress)(&self.done);
        Ok(())
    }

    /// What verification reads back: each file's blobs and their lengths.
    fn to_verify(&self, files: Vec<(PathBuf, bool, &Node)>) -> Vec<verify::ToVerify> {
        files
            .into_iter()
            .filter(|(_, _, node)| node.content.as_ref().is_some_and(|c| !c.is_empty()))
            .map(|(rel, device, node)| verify::ToVerify {
                display: match &self.target {
                    Some(t) if !device => t.display(&rel),
                    _ => rel.clone(),
                },
                rel,
                device,
                content: node
                    .content
                    .iter()
                    .flatten()
                    .map(|id| {
                        let len = self.index.get(BlobType::Data, id).map(|l| l.plain_len());
                        (*id, len.unwrap_or(0))
                    })
                    .collect(),
            })
            .collect()
    }

    /// Reads files back and compares them with the snapshot.
    async fn verify_files(&mut self, files: Vec<verify::ToVerify>) {
        let n = files.len() as u64;
        let target = self.target.clone();
        let workers = self.opts.workers_for(false);
        let bad =
            crate::repository::blocking(move || verify::verify(target.as_deref(), &files, workers))
                .await;
        self.summary.verified_files += n - bad.len() as u64;
        self.summary.verify_failures.extend(bad);
    }
}

/// Whether writing `bytes` through the page cache nearly fills a file system with `free`
/// bytes free: ext4 forces the writeback of delayed allocations, and makes the writer wait
/// for it, once they exceed half of the free space (`ext4_nonda_switch`). Restoring 1 GiB of
/// small files into a 1.34 GiB ext4 spent ~1.5 s of thread time waiting there.
fn fills_the_target(bytes: u64, free: Option<u64>) -> bool {
    free.is_some_and(|free| bytes.saturating_mul(2) > free)
}

fn device_size(f: &std::fs::File) -> std::io::Result<u64> {
    use std::io::Seek;
    let mut f = f;
    f.seek(std::io::SeekFrom::End(0))
}

/// Groups every needed blob by pack, then cuts each pack's blobs into contiguous ranges,
/// packs in the order the files need them.
/// A file with a blob the index does not know is marked damaged and not planned at all.
fn plan_ranges(files: &mut [FileTarget], index: &MasterIndex) -> Vec<RangeJob> {
    let mut per_pack: HashMap<u32, IdMap<PlannedBlob>> = HashMap::new();
    // Packs in the order the files first need them: files complete early and in turn, so
    // few are open at once and each is written mostly front to back.
    let mut pack_order = Vec::new();
    for (fi, f) in files.iter_mut().enumerate() {
        let content = f.node.content.as_deref().unwrap_or(&[]);
        if let Some(missing) = content
            .iter()
            .find(|id| !index.contains(BlobType::Data, id))
        {
            let _ = f.damaged.set(Fault {
                pack: None,
                blob: Some(*missing),
                reason: "the blob is not in the repository index".into(),
            });
            f.remaining.store(0, Ordering::Relaxed);
            continue;
        }
        let mut offset = 0u64;
        for id in content {
            let loc = index.get(BlobType::Data, id).expect("checked above");
            per_pack
                .entry(loc.pack)
                .or_insert_with(|| {
                    pack_order.push(loc.pack);
                    IdMap::default()
                })
                .entry(*id)
                .or_insert_with(|| PlannedBlob {
                    id: *id,
                    loc,
                    targets: Vec::new(),
                })
                .targets
                .push(BlobTarget {
                    file: fi as u32,
                    offset,
                });
            offset += loc.plain_len();
        }
        if offset != f.node.size {
            tracing::warn!(path = %f.rel.display(), size = f.node.size, content = offset, "file size differs from its content's length");
        }
        f.len = offset;
    }
    let mut jobs = Vec::new();
    for pack in pack_order {
        let blobs = per_pack
            .remove(&pack)
            .expect("every ordered pack has blobs");
        let pack_id = index.pack_id(pack);
        let mut blobs: Vec<PlannedBlob> = blobs.into_values().collect();
        blobs.sort_by_key(|b| b.loc.offset);
        let mut cur: Option<RangeJob> = None;
        for b in blobs {
            let start = b.loc.offset as u64;
            let end = start + b.loc.length as u64;
            if let Some(j) = cur.as_mut()
                && start <= j.end + MAX_GAP
                && end - j.start <= MAX_RANGE
            {
                j.end = j.end.max(end);
                j.blobs.push(b);
                continue;
            }
            if let Some(j) = cur.take() {
                jobs.push(j);
            }
            cur = Some(RangeJob {
                pack: pack_id,
                start,
                end,
                blobs: vec![b],
            });
        }
        jobs.extend(cur);
    }
    jobs
}

async fn execute(
    repo: &Repository,
    jobs: Vec<RangeJob>,
    shared: Arc<Shared>,
    opts: &RestoreOptions,
    workers: usize,
) -> Result<()> {
    let budget_kib = (opts.memory_budget / 1024).max(1) as u32;
    let budget = Arc::new(tokio::sync::Semaphore::new(budget_kib as usize));
    let cpu = Arc::new(tokio::sync::Semaphore::new(workers.max(1)));
    let backend = repo.backend().clone();
    let mut stream = futures::stream::iter(jobs)
        .map(|job| {
            let budget = budget.clone();
            let cpu = cpu.clone();
            let backend = backend.clone();
            let shared = shared.clone();
            async move {
                if shared.failed.load(Ordering::Relaxed) {
                    return Ok(());
                }
                let kib = (((job.end - job.start) / 1024) as u32 + 1).min(budget_kib);
                let _mem = budget.acquire_many(kib).await.expect("semaphore open");
                let handle = Handle::new(FileType::Pack, job.pack.to_hex());
                let buf = shared.buffers.lock().unwrap().pop().unwrap_or_default();
                let r = match backend.load_range(&handle, job.start..job.end, buf).await {
                    Ok(data) => process_on_cpu(&cpu, &shared, job, data).await,
                    Err(e) if job.blobs.len() == 1 => {
                        fault_blob(&shared, job.pack, &job.blobs[0], format!("cannot read pack: {e}"));
                        Ok(())
                    }
                    Err(e) => {
                        // Save what can be saved: one read per blob, so a pack cut short or
                        // a bad stretch costs only the blobs it really holds.
                        tracing::warn!(pack = %job.pack, error = %e, "cannot read a pack range; reading its blobs one by one");
                        let mut r = Ok(());
                        for b in job.blobs {
                            let (start, end) = (b.loc.offset as u64, b.loc.offset as u64 + b.loc.length as u64);
                            let buf = shared.buffers.lock().unwrap().pop().unwrap_or_default();
                            match backend.load_range(&handle, start..end, buf).await {
                                Ok(data) => {
                                    let one = RangeJob { pack: job.pack, start, end, blobs: vec![b] };
                                    r = process_on_cpu(&cpu, &shared, one, data).await;
                                    if r.is_err() {
                                        break;
                                    }
                                }
                                Err(e) => fault_blob(&shared, job.pack, &b, format!("cannot read pack: {e}")),
                            }
                        }
                        r
                    }
                };
                shared.report(false);
                r
            }
        })
        .buffer_unordered(opts.fetch_concurrency.max(1));
    let mut first_err = None;
    while let Some(r) = stream.next().await {
        if let Err(e) = r {
            shared.failed.store(true, Ordering::Relaxed);
            first_err.get_or_insert(e);
        }
    }
    shared.report(true);
    match first_err {
        Some(e) => {
            // Every job has stopped: remove each file this restore started and did not
            // finish, so a failed restore never leaves a file that looks restored but is not.
            if let Some(target) = &shared.target {
                for f in &shared.files {
                    if f.created.load(Ordering::Acquire) && f.remaining.load(Ordering::Acquire) > 0
                    {
                        let _ = target.remove_file(f.tmp.as_ref().unwrap_or(&f.rel));
                    }
                }
            }
            Err(e)
        }
        None => Ok(()),
    }
}

/// Decrypts and writes a fetched range on a worker thread.
async fn process_on_cpu(
    cpu: &tokio::sync::Semaphore,
    shared: &Arc<Shared>,
    job: RangeJob,
    data: RangeData,
) -> Result<()> {
    let _cpu = cpu.acquire().await.expect("semaphore open");
    let s2 = shared.clone();
    let r = tokio::task::spawn_blocking(move || process_range(&s2, &job, data))
        .await
        .expect("restore worker panicked");
    if r.is_err() {
        shared.failed.store(true, Ordering::Relaxed);
    }
    r
}

fn process_range(shared: &Shared, job: &RangeJob, data: RangeData) -> Result<()> {
    let mut scratch = shared.scratch.lock().unwrap().pop().unwrap_or_default();
    let r = process_blobs(shared, job, &data, &mut scratch);
    shared.scratch.lock().unwrap().push(scratch);
    if let RangeData::Buffer(b) = data {
        shared.buffers.lock().unwrap().push(b);
    }
    r
}

/// Marks every file that needs `b` as damaged (and finishes its share of the file).
fn fault_blob(shared: &Shared, pack: Id, b: &PlannedBlob, reason: String) {
    tracing::warn!(%pack, blob = %b.id, %reason, "damaged blob");
    for t in &b.targets {
        let f = &shared.files[t.file as usize];
        let _ = f.damaged.set(Fault {
            pack: Some(pack),
            blob: Some(b.id),
            reason: reason.clone(),
        });
        // Nothing to finish for a damaged file, so this cannot fail.
        let mut open = f.open.lock().unwrap();
        let _ = finish_one(shared, f, &mut open);
    }
}

/// Verifies and decrypts each blob of the fetched range and decompresses it; every few
/// blobs ([`LANES`]) checks their hashes together, then writes them while they are still in
/// the CPU's cache, unless another worker is writing that file: then the blob waits in the
/// buffer and the next ones are decoded; the waiting blobs are written later, those that
/// follow each other at once. A blob that fails costs only its files.
fn process_blobs(shared: &Shared, job: &RangeJob, data: &[u8], s: &mut Scratch) -> Result<()> {
    let mut used = 0usize;
    s.writes.clear();
    s.unhashed.clear();
    for (i, b) in job.blobs.iter().enumerate() {
        let len = b.loc.plain_len() as usize;
        let direct = shared.direct_writes.load(Ordering::Relaxed);
        let first = b.targets.first().map_or(0, |t| t.offset);
        let mut pad = direct_padding(direct, used, first, len);
        if used > 0 && used + pad + len > WRITE_BATCH {
            check_ids(shared, job, s);
            write_segments(shared, &s.plain[..used], &mut s.writes, Wait::Yes)?;
            used = 0;
            pad = direct_padding(direct, used, first, len);
        }
        used += pad;
        s.plain.grow(used + len, used);
        let at = (b.loc.offset as u64 - job.start) as usize;
        let sealed = &data[at..at + b.loc.length as usize];
        let out = &mut s.plain[used..used + len];
        match decode_blob_unhashed_to(
            &shared.key,
            sealed,
            b.loc.uncompressed_length,
            &b.id,
            out,
            &mut s.decrypted,
        ) {
            Ok(()) => {
                s.unhashed.push(Unhashed {
                    blob: i,
                    start: used,
                    len,
                });
                used += len;
                if s.unhashed.len() == LANES {
                    check_ids(shared, job, s);
                    write_segments(shared, &s.plain[..used], &mut s.writes, Wait::No)?;
                    if s.writes.is_empty() {
                        used = 0;
                    }
                }
            }
            Err(reason) => fault_blob(shared, job.pack, b, reason),
        }
    }
    check_ids(shared, job, s);
    write_segments(shared, &s.plain[..used], &mut s.writes, Wait::Yes)
}

/// Hashes the decoded blobs waiting in `s.unhashed` together; each whose hash is its id gets
/// its writes queued, each other one faults its files.
fn check_ids(shared: &Shared, job: &RangeJob, s: &mut Scratch) {
    if s.unhashed.is_empty() {
        return;
    }
    let plain = &s.plain;
    let mut msgs: [&[u8]; LANES] = [&[]; LANES];
    for (m, u) in msgs.iter_mut().zip(&s.unhashed) {
        *m = &plain[u.start..u.start + u.len];
    }
    Id::hash_each(&msgs[..s.unhashed.len()], &mut s.ids);
    for (u, id) in s.unhashed.iter().zip(&s.ids) {
        let b = &job.blobs[u.blob];
        if *id != b.id {
            fault_blob(shared, job.pack, b, blob_id_mismatch(&b.id));
            continue;
        }
        let (start, end) = (u.start, u.start + u.len);
        let zero = is_zero(&plain[start..end]);
        s.writes.extend(b.targets.iter().map(|t| Segment {
            file: t.file,
            offset: t.offset,
            start,
            end,
            zero,
        }));
    }
    s.unhashed.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_are_sized_to_the_machine_and_doubled_when_writes_wait_for_the_disk() {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let sized = RestoreOptions::default();
        assert_eq!(sized.workers_for(false), cpus);
        assert_eq!(sized.workers_for(true), 2 * cpus);
        let chosen = RestoreOptions {
            workers: 3,
            ..Default::default()
        };
        assert_eq!(chosen.workers_for(false), 3);
        assert_eq!(chosen.workers_for(true), 3);
    }

    #[test]
    fn data_over_half_the_free_space_fills_the_target() {
        const GIB: u64 = 1 << 30;
        // 1 GiB into the 1.34 GiB file system of `ferry bench repo`: ext4 would make writers wait.
        assert!(fills_the_target(GIB, Some(GIB * 134 / 100)));
        // The same into 3 GiB, and into exactly twice the data: no forced writeback.
        assert!(!fills_the_target(GIB, Some(3 * GIB)));
        assert!(!fills_the_target(GIB, Some(2 * GIB)));
        // An unknown free space is not taken for a full disk; no overflow at the extremes.
        assert!(!fills_the_target(GIB, None));
        assert!(fills_the_target(u64::MAX, Some(1 << 40)));
        assert!(!fills_the_target(0, Some(0)));
    }
}
