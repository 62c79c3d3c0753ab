//! The restore engine. Walks the snapshot's trees, creates directories, links and empty files,
//! then fetches the needed pack ranges concurrently, decrypts/decompresses/verifies on worker
//! threads and writes every blob with positional writes wherever it belongs, in any order.
//! Memory is bounded by a byte budget for fetched-but-unwritten data and by planning in batches.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use futures::StreamExt;

use crate::backend::{FileType, Handle, RangeData};
use crate::crypto::Key;
use crate::error::{RepoError, Result};
use crate::fsmeta;
use crate::id::Id;
use crate::index::{BlobLocation, MasterIndex};
use crate::pack::BlobType;
use crate::repository::{Repository, decode_blob_into};
use crate::snapshot::Snapshot;
use crate::tree::Node;

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
    /// Threads decrypting, decompressing and writing.
    pub workers: usize,
    /// Bytes of fetched, not yet written pack data allowed in memory.
    pub memory_budget: usize,
    /// Blobs planned per batch (bounds the plan's memory for huge snapshots).
    pub batch_blobs: usize,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions {
            fetch_concurrency: 8,
            workers: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            memory_budget: 96 << 20,
            batch_blobs: 200_000,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RestoreProgress {
    pub total_bytes: u64,
    pub bytes_done: u64,
    pub total_files: u64,
    pub files_done: u64,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RestoreSummary {
    pub files: u64,
    pub dirs: u64,
    pub links: u64,
    pub total_bytes: u64,
    /// Bytes actually written (all-zero blobs are left as holes).
    pub bytes_written: u64,
    pub seconds: f64,
}

pub type ProgressFn = Arc<dyn Fn(&RestoreProgress) + Send + Sync>;

/// Range reads never span more than this.
const MAX_RANGE: u64 = 8 << 20;
/// A gap larger than this between needed blobs of one pack starts a new range.
const MAX_GAP: u64 = 1 << 20;

struct FileTarget {
    path: PathBuf,
    node: Node,
    device: bool,
    /// Blobs in the file's content (its writes).
    blobs: u32,
    remaining: AtomicU32,
    created: OnceLock<std::result::Result<(), String>>,
}

impl FileTarget {
    fn ensure_created(&self) -> std::result::Result<(), String> {
        self.created
            .get_or_init(|| {
                let r = if self.device {
                    std::fs::OpenOptions::new()
                        .write(true)
                        .open(&self.path)
                        .map(|_| ())
                } else {
                    std::fs::OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .mode(0o600)
                        .open(&self.path)
                        .and_then(|f| f.set_len(self.node.size))
                };
                r.map_err(|e| format!("{}: {e}", self.path.display()))
            })
            .clone()
    }
}

#[derive(Clone, Copy)]
struct BlobTarget {
    file: u32,
    offset: u64,
}

struct PlannedBlob {
    id: Id,
    loc: BlobLocation,
    targets: Vec<BlobTarget>,
}

struct RangeJob {
    pack: Id,
    start: u64,
    end: u64,
    blobs: Vec<PlannedBlob>,
}

struct Shared {
    key: Key,
    files: Vec<FileTarget>,
    progress: ProgressFn,
    total: Mutex<RestoreProgress>,
    bytes_done: AtomicU64,
    bytes_written: AtomicU64,
    files_done: AtomicU64,
    failed: AtomicBool,
    last_report: Mutex<Instant>,
    /// Decryption and decompression buffers, a pair per busy worker, reused across ranges.
    scratch: Mutex<Vec<(Vec<u8>, Vec<u8>)>>,
    /// Range buffers, at most one per fetch in flight, reused: allocating (and freeing)
    /// megabytes per range costs page faults and lets the allocator's heaps grow.
    buffers: Mutex<Vec<Vec<u8>>>,
}

impl Shared {
    fn report(&self, force: bool) {
        {
            let mut last = self.last_report.lock().unwrap();
            if !force && last.elapsed().as_millis() < 100 {
                return;
            }
            *last = Instant::now();
        }
        let mut p = self.total.lock().unwrap().clone();
        p.bytes_done += self.bytes_done.load(Ordering::Relaxed);
        p.files_done += self.files_done.load(Ordering::Relaxed);
        (self.progress)(&p);
    }
}

fn is_zero(b: &[u8]) -> bool {
    // Word-at-a-time check; fast enough to be free next to decryption.
    let (pre, mid, post) = unsafe { b.align_to::<u128>() };
    pre.iter().all(|&x| x == 0) && mid.iter().all(|&x| x == 0) && post.iter().all(|&x| x == 0)
}

fn check_name(name: &[u8]) -> Result<&OsStr> {
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0)
    {
        return Err(RepoError::Invalid(format!(
            "snapshot contains an unsafe entry name {:?}",
            String::from_utf8_lossy(name)
        )));
    }
    Ok(OsStr::from_bytes(name))
}

/// The state of one restore run across batches.
struct Run<'a> {
    repo: &'a Repository,
    index: Arc<MasterIndex>,
    opts: RestoreOptions,
    progress: ProgressFn,
    done: RestoreProgress,
    summary: RestoreSummary,
    /// Files waiting for content, and the blob count they need.
    pending: Vec<FileTarget>,
    pending_blobs: usize,
    /// (device, inode) of multiply-linked files → first restored path.
    hardlinks: HashMap<(u64, u64), PathBuf>,
    links_to_make: Vec<(PathBuf, PathBuf)>,
    dirs: Vec<(PathBuf, Node, usize)>,
}

impl Repository {
    /// Restores `snapshot` to `target`.
    pub async fn restore(
        &self,
        snapshot: &Snapshot,
        target: RestoreTarget,
        options: RestoreOptions,
        progress: ProgressFn,
    ) -> Result<RestoreSummary> {
        let lock = self.lock(false).await?;
        let result = self
            .restore_locked(snapshot, target, options, progress)
            .await;
        lock.release().await;
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
            pending: Vec::new(),
            pending_blobs: 0,
            hardlinks: HashMap::new(),
            links_to_make: Vec::new(),
            dirs: Vec::new(),
        };
        match target {
            RestoreTarget::Directory { path, subpath } => {
                run.restore_directory(snapshot, &path, subpath.as_deref())
                    .await?
            }
            RestoreTarget::Device { path } => run.restore_device(snapshot, &path).await?,
        }
        (run.progress)(&run.done);
        run.summary.seconds = started.elapsed().as_secs_f64();
        run.summary.total_bytes = run.done.total_bytes;
        Ok(run.summary)
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

impl Run<'_> {
    async fn restore_directory(
        &mut self,
        snapshot: &Snapshot,
        target: &Path,
        subpath: Option<&str>,
    ) -> Result<()> {
        std::fs::create_dir_all(target).map_err(|e| RepoError::io(target, e))?;
        let root = match subpath {
            None => snapshot.tree,
            Some(sp) => match self.repo.find_node(snapshot, sp).await? {
                None => snapshot.tree,
                Some(node) if node.kind == "dir" => {
                    node.subtree.ok_or_else(|| RepoError::CorruptFile {
                        what: format!("snapshot {} path {sp}", snapshot.id.short()),
                        reason: "directory without subtree".into(),
                    })?
                }
                Some(node) => {
                    // A single entry: restore it into the target directory.
                    self.restore_nodes(vec![(target.to_path_buf(), vec![node], 1)])
                        .await?;
                    return self.finish().await;
                }
            },
        };
        // Breadth-first over trees, loading each level's trees concurrently.
        let mut level: Vec<(PathBuf, Id, usize)> = vec![(target.to_path_buf(), root, 0)];
        while !level.is_empty() {
            let repo = self.repo;
            let loaded: Vec<Result<(PathBuf, Vec<Node>, usize)>> = futures::stream::iter(level)
                .map(|(path, id, depth)| async move {
                    let t = repo.load_tree(&id).await?;
                    Ok((path, t.nodes, depth + 1))
                })
                .buffered(16)
                .collect()
                .await;
            let loaded = loaded.into_iter().collect::<Result<Vec<_>>>()?;
            level = self.restore_nodes(loaded).await?;
        }
        self.finish().await
    }

    /// Creates the entries of some directories; returns the subdirectories still to walk.
    async fn restore_nodes(
        &mut self,
        dirs: Vec<(PathBuf, Vec<Node>, usize)>,
    ) -> Result<Vec<(PathBuf, Id, usize)>> {
        let mut next = Vec::new();
        for (dir, nodes, depth) in dirs {
            for node in nodes {
                let path = dir.join(check_name(&node.name)?);
                match node.kind.as_str() {
                    "dir" => {
                        match std::fs::create_dir(&path) {
                            Ok(()) => {}
                            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                            Err(e) => return Err(RepoError::io(&path, e)),
                        }
                        self.summary.dirs += 1;
                        if let Some(sub) = node.subtree {
                            next.push((path.clone(), sub, depth));
                        }
                        self.dirs.push((path, node, depth));
                    }
                    "file" => self.plan_file(path, node, false).await?,
                    "symlink" => {
                        let _ = std::fs::remove_file(&path);
                        std::os::unix::fs::symlink(OsStr::from_bytes(&node.linktarget), &path)
                            .map_err(|e| RepoError::io(&path, e))?;
                        fsmeta::apply_to_path(&path, &node).map_err(|e| RepoError::io(&path, e))?;
                        self.summary.links += 1;
                    }
                    _ => {
                        let _ = std::fs::remove_file(&path);
                        if let Err(e) = fsmeta::make_special(&path, &node) {
                            tracing::warn!(path = %path.display(), error = %e, "cannot create special file");
                        } else {
                            fsmeta::apply_to_path(&path, &node)
                                .map_err(|e| RepoError::io(&path, e))?;
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

    async fn plan_file(&mut self, path: PathBuf, node: Node, device: bool) -> Result<()> {
        self.done.total_files += 1;
        self.summary.files += 1;
        if node.links > 1 && !device {
            let key = (node.device_id, node.inode);
            if let Some(first) = self.hardlinks.get(&key) {
                self.links_to_make.push((first.clone(), path));
                self.done.files_done += 1;
                return Ok(());
            }
            self.hardlinks.insert(key, path.clone());
        }
        let blobs = node.content.as_ref().map(|c| c.len()).unwrap_or(0);
        self.done.total_bytes += node.size;
        let target = FileTarget {
            path,
            node,
            device,
            blobs: blobs as u32,
            remaining: AtomicU32::new(blobs as u32),
            created: OnceLock::new(),
        };
        if blobs == 0 {
            target.ensure_created().map_err(RepoError::Invalid)?;
            if !device {
                fsmeta::apply_to_path(&target.path, &target.node)
                    .map_err(|e| RepoError::io(&target.path, e))?;
            }
            self.done.files_done += 1;
            return Ok(());
        }
        self.pending_blobs += blobs;
        self.pending.push(target);
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
        self.plan_file(device.to_path_buf(), node, true).await?;
        self.finish().await
    }

    async fn finish(&mut self) -> Result<()> {
        tracing::debug!("restore: trees walked");
        self.run_batch().await?;
        // Directories last, deepest first: writing into them changed their times.
        self.dirs.sort_by_key(|d| std::cmp::Reverse(d.2));
        for (path, node, _) in std::mem::take(&mut self.dirs) {
            fsmeta::apply_to_path(&path, &node).map_err(|e| RepoError::io(&path, e))?;
        }
        Ok(())
    }

    async fn run_batch(&mut self) -> Result<()> {
        let files = std::mem::take(&mut self.pending);
        self.pending_blobs = 0;
        if !files.is_empty() {
            let planned = Instant::now();
            let jobs = plan_ranges(&files, &self.index)?;
            tracing::debug!(files = files.len(), ranges = jobs.len(), took = ?planned.elapsed(), "restore: batch planned");
            let shared = Arc::new(Shared {
                key: self.repo.key().clone(),
                files,
                progress: self.progress.clone(),
                total: Mutex::new(self.done.clone()),
                bytes_done: AtomicU64::new(0),
                bytes_written: AtomicU64::new(0),
                files_done: AtomicU64::new(0),
                failed: AtomicBool::new(false),
                last_report: Mutex::new(Instant::now()),
                scratch: Mutex::new(Vec::new()),
                buffers: Mutex::new(Vec::new()),
            });
            let executed = Instant::now();
            let result = execute(self.repo, jobs, shared.clone(), &self.opts).await;
            tracing::debug!(took = ?executed.elapsed(), "restore: batch written");
            self.done.bytes_done += shared.bytes_done.load(Ordering::Relaxed);
            self.done.files_done += shared.files_done.load(Ordering::Relaxed);
            self.summary.bytes_written += shared.bytes_written.load(Ordering::Relaxed);
            result?;
        }
        for (src, dst) in std::mem::take(&mut self.links_to_make) {
            let _ = std::fs::remove_file(&dst);
            std::fs::hard_link(&src, &dst).map_err(|e| RepoError::io(&dst, e))?;
        }
        (self.progress)(&self.done);
        Ok(())
    }
}

fn device_size(f: &std::fs::File) -> std::io::Result<u64> {
    use std::io::Seek;
    let mut f = f;
    f.seek(std::io::SeekFrom::End(0))
}

/// Groups every needed blob by pack, then cuts each pack's blobs into contiguous ranges.
fn plan_ranges(files: &[FileTarget], index: &MasterIndex) -> Result<Vec<RangeJob>> {
    let mut per_pack: HashMap<u32, HashMap<Id, PlannedBlob>> = HashMap::new();
    for (fi, f) in files.iter().enumerate() {
        let mut offset = 0u64;
        for id in f.node.content.as_deref().unwrap_or(&[]) {
            let loc = index
                .get(BlobType::Data, id)
                .ok_or_else(|| RepoError::MissingBlob {
                    blob: id.to_hex(),
                    needed_by: f.path.display().to_string(),
                })?;
            per_pack
                .entry(loc.pack)
                .or_default()
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
            tracing::warn!(path = %f.path.display(), size = f.node.size, content = offset, "file size differs from its content's length");
        }
    }
    let mut jobs = Vec::new();
    for (pack, blobs) in per_pack {
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
    Ok(jobs)
}

async fn execute(
    repo: &Repository,
    jobs: Vec<RangeJob>,
    shared: Arc<Shared>,
    opts: &RestoreOptions,
) -> Result<()> {
    let budget_kib = (opts.memory_budget / 1024).max(1) as u32;
    let budget = Arc::new(tokio::sync::Semaphore::new(budget_kib as usize));
    let cpu = Arc::new(tokio::sync::Semaphore::new(opts.workers.max(1)));
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
                let buf = shared.buffers.lock().unwrap().pop().unwrap_or_default();
                let data = backend
                    .load_range(
                        &Handle::new(FileType::Pack, job.pack.to_hex()),
                        job.start..job.end,
                        buf,
                    )
                    .await
                    .map_err(|e| RepoError::Corrupt {
                        pack: job.pack.to_hex(),
                        file: affected_files(&shared, &job.blobs),
                        reason: format!("cannot read pack: {e}"),
                    })?;
                let _cpu = cpu.acquire().await.expect("semaphore open");
                let s2 = shared.clone();
                let r = tokio::task::spawn_blocking(move || process_range(&s2, &job, data))
                    .await
                    .expect("restore worker panicked");
                if r.is_err() {
                    shared.failed.store(true, Ordering::Relaxed);
                }
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
            // Every job has stopped: remove each file that did not get all its blobs, so a
            // failed restore never leaves a file that looks restored but is not.
            for f in &shared.files {
                if !f.device && f.created.get().is_some() && f.remaining.load(Ordering::Acquire) > 0
                {
                    let _ = std::fs::remove_file(&f.path);
                }
            }
            Err(e)
        }
        None => Ok(()),
    }
}

fn affected_files(shared: &Shared, blobs: &[PlannedBlob]) -> String {
    let mut paths: Vec<String> = blobs
        .iter()
        .flat_map(|b| b.targets.iter())
        .map(|t| shared.files[t.file as usize].path.display().to_string())
        .collect();
    paths.sort();
    paths.dedup();
    paths.join(", ")
}

fn process_range(shared: &Shared, job: &RangeJob, data: RangeData) -> Result<()> {
    let mut bufs = shared.scratch.lock().unwrap().pop().unwrap_or_default();
    let r = process_blobs(shared, job, &data, &mut bufs);
    shared.scratch.lock().unwrap().push(bufs);
    if let RangeData::Buffer(b) = data {
        shared.buffers.lock().unwrap().push(b);
    }
    r
}

/// Verifies and decrypts each blob of the fetched range, decompresses it, checks its hash
/// and writes it to every place it belongs.
fn process_blobs(
    shared: &Shared,
    job: &RangeJob,
    data: &[u8],
    (decrypted, scratch): &mut (Vec<u8>, Vec<u8>),
) -> Result<()> {
    for b in &job.blobs {
        let at = (b.loc.offset as u64 - job.start) as usize;
        let sealed = &data[at..at + b.loc.length as usize];
        let plain = match decode_blob_into(
            &shared.key,
            sealed,
            b.loc.uncompressed_length,
            &b.id,
            decrypted,
            scratch,
        ) {
            Ok(p) => p,
            Err(reason) => {
                let files = affected_files(shared, std::slice::from_ref(b));
                // Never leave a file that looks restored but is not.
                for t in &b.targets {
                    let f = &shared.files[t.file as usize];
                    if !f.device {
                        let _ = std::fs::remove_file(&f.path);
                    }
                }
                return Err(RepoError::Corrupt {
                    pack: job.pack.to_hex(),
                    file: files,
                    reason,
                });
            }
        };
        let zero = is_zero(plain);
        for t in &b.targets {
            let f = &shared.files[t.file as usize];
            write_blob(shared, f, t.offset, plain, zero)?;
        }
    }
    Ok(())
}

/// Holes are punched at this granularity: all-zero pieces of a blob are not written.
const SPARSE_PIECE: usize = 64 * 1024;

fn write_blob(
    shared: &Shared,
    f: &FileTarget,
    offset: u64,
    plain: &[u8],
    zero: bool,
) -> Result<()> {
    let io = |e| RepoError::io(&f.path, e);
    // A file of one blob (most small files) is created, written and finished with one open.
    let whole = f.blobs == 1 && !f.device;
    let file = if whole {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&f.path)
            .map_err(io)?;
        // Marks the file as ours: removed if the restore fails before it is complete.
        let _ = f.created.set(Ok(()));
        file
    } else {
        f.ensure_created().map_err(RepoError::Invalid)?;
        std::fs::OpenOptions::new()
            .write(true)
            .read(f.device)
            .open(&f.path)
            .map_err(io)?
    };
    // Write the non-zero runs; a zero piece is skipped where the target already reads back
    // zeros (always true for a file we truncated; checked by reading for a device).
    let mut run_start: Option<usize> = None;
    let mut written = 0u64;
    let mut written_end = 0usize;
    let mut scratch = Vec::new();
    let mut pos = 0usize;
    while pos < plain.len() {
        let end = (pos + SPARSE_PIECE).min(plain.len());
        let piece = &plain[pos..end];
        let mut needs_write = zero_needs_write(zero, piece);
        if !needs_write && f.device {
            scratch.resize(piece.len(), 0);
            let n = file
                .read_at(&mut scratch, offset + pos as u64)
                .map_err(io)?;
            needs_write = n < piece.len() || !is_zero(&scratch);
        }
        match (needs_write, run_start) {
            (true, None) => run_start = Some(pos),
            (false, Some(s)) => {
                file.write_all_at(&plain[s..pos], offset + s as u64)
                    .map_err(io)?;
                written += (pos - s) as u64;
                written_end = pos;
                run_start = None;
            }
            _ => {}
        }
        pos = end;
    }
    if let Some(s) = run_start {
        file.write_all_at(&plain[s..], offset + s as u64)
            .map_err(io)?;
        written += (plain.len() - s) as u64;
        written_end = plain.len();
    }
    if whole && offset + (written_end as u64) < f.node.size {
        // Trailing zeros were skipped: the size comes from a hole.
        file.set_len(f.node.size).map_err(io)?;
    }
    shared.bytes_written.fetch_add(written, Ordering::Relaxed);
    shared
        .bytes_done
        .fetch_add(plain.len() as u64, Ordering::Relaxed);
    if f.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
        if !f.device {
            fsmeta::apply_to_fd(&file, &f.node, &f.path).map_err(|e| RepoError::io(&f.path, e))?;
        } else {
            file.sync_all().map_err(|e| RepoError::io(&f.path, e))?;
        }
        shared.files_done.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// Whether a piece must be written: not when the whole blob is zero, else when it has data.
fn zero_needs_write(blob_is_zero: bool, piece: &[u8]) -> bool {
    !blob_is_zero && !is_zero(piece)
}
