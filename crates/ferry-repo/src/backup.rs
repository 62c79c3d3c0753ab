//! The backup engine. A walker thread reads the tree in restic's order (entries sorted by
//! name) and hands changed files to file threads that read and chunk them; chunks go to blob
//! threads that hash, deduplicate, compress and encrypt; sealed blobs fill packs that async
//! uploaders store. Then the index and the snapshot are written, in that order, so a crash
//! never leaves a snapshot pointing at data that is not indexed.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use crossbeam_channel as cb;

use crate::backend::{FileType, Handle};
use crate::chunker::{Chunker, Pol};
use crate::error::{RepoError, Result};
use crate::id::Id;
use crate::index::{IndexJson, IndexPackJson};
use crate::pack::{BlobType, PackBuilder};
use crate::repository::Repository;
use crate::restore::{ProgressFn, RestoreProgress};
use crate::snapshot::Snapshot;
use crate::targets::{Layout, LayoutEntry};
use crate::tree::{Node, Tree, format_time, go_mode_from_unix, parse_time};

mod direct_read;
pub use direct_read::DirectReader;

/// What to back up.
pub enum BackupSource {
    /// Files and directories as `restic backup PATH…` stores them (see [`crate::targets`]):
    /// an absolute path keeps its whole path in the tree, a relative one its relative
    /// components (resolved against the working directory), `.` puts the directory's entries
    /// at the root; the snapshot's paths are absolute and sorted.
    Paths(Vec<PathBuf>),
    /// A volume: the directory's entries at the snapshot's root, and the directory as the
    /// snapshot's one path (what `cd DIR && restic backup .` makes). The data mover's choice,
    /// so that a volume restores into a volume without a subpath.
    Contents(PathBuf),
    /// One stream stored as a single file named `filename` (a block volume, a dump).
    Stream {
        reader: Box<dyn Read + Send>,
        filename: String,
    },
}

#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    /// Host name for the snapshot (default: this host).
    pub host: Option<String>,
    pub tags: Vec<String>,
    /// Parent snapshot; `None` picks the latest snapshot of the same host and paths.
    pub parent: Option<Snapshot>,
    /// Don't use any parent.
    pub no_parent: bool,
    /// Threads hashing, compressing and encrypting (default: the CPU count).
    pub workers: usize,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct BackupSummary {
    pub snapshot_id: Id,
    pub parent: Option<Id>,
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unmodified: u64,
    pub dirs: u64,
    pub data_blobs: u64,
    pub tree_blobs: u64,
    /// Bytes stored in new packs (after compression and encryption).
    pub data_added: u64,
    pub total_files_processed: u64,
    pub total_bytes_processed: u64,
    pub seconds: f64,
}

/// Packs are cut once they reach this size.
const PACK_SIZE: usize = 16 << 20;
/// Packs stored at once. Each holds a 16 MiB pack in memory; a local disk takes them as
/// fast as two at a time (packs are written with O_DIRECT) and the peak RSS stays low.
const UPLOADS: usize = 2;
/// Index files hold at most this many blobs.
const INDEX_BLOBS: usize = 50_000;

struct Counters {
    files_new: AtomicU64,
    files_changed: AtomicU64,
    files_unmodified: AtomicU64,
    dirs: AtomicU64,
    data_blobs: AtomicU64,
    tree_blobs: AtomicU64,
    data_added: AtomicU64,
    files_done: AtomicU64,
    bytes_done: AtomicU64,
}

type Uploaded = (Id, Vec<crate::pack::PackedBlob>);
/// A finished pack's bytes, the blobs in it and its id.
type PackUpload = (Vec<u8>, Vec<crate::pack::PackedBlob>, Id);

/// Chunk buffers kept for reuse: enough for the chunks in flight, so a backup does not
/// allocate (and fault in) a fresh buffer of up to [`crate::chunker::MAX_SIZE`] per chunk.
const SPARE_BUFFERS: usize = 4;

/// Data packs being filled.
#[derive(Default)]
struct DataPacks {
    idle: Vec<PackBuilder>,
    /// Idle ones and those a thread is sealing into.
    open: usize,
}

/// Everything the worker threads share.
struct Saver {
    repo: Repository,
    rt: tokio::runtime::Handle,
    known: Mutex<HashSet<(BlobType, Id)>>,
    /// Data packs being filled and not in use: a thread takes one, seals a blob into it
    /// outside the lock and puts it back, so threads compress and encrypt in parallel and
    /// straight into pack memory. There are at most as many as threads saving at once.
    data_packs: Mutex<DataPacks>,
    /// Signalled when a data pack is put back or shipped.
    data_pack_back: std::sync::Condvar,
    /// At most this many data packs are being filled (the peak RSS).
    max_data_packs: usize,
    tree_pack: Mutex<PackBuilder>,
    /// Emptied chunk buffers, for the file threads to fill again.
    spare_buffers: Mutex<Vec<Vec<u8>>>,
    /// Taken (closed) once everything is flushed, which ends the uploader.
    uploads: Mutex<Option<tokio::sync::mpsc::Sender<PackUpload>>>,
    counters: Counters,
    compress: bool,
    progress: ProgressFn,
    last_report: Mutex<Instant>,
}

impl Saver {
    /// Hashes, deduplicates, compresses, seals and packs one blob; returns its id.
    fn save_blob(&self, kind: BlobType, data: &[u8]) -> Result<Id> {
        let id = Id::hash(data);
        if !self.known.lock().unwrap().insert((kind, id)) {
            return Ok(id);
        }
        let zstd_err = |e: std::io::Error| RepoError::Invalid(format!("zstd: {e}"));
        let full = match kind {
            BlobType::Data => {
                let mut p = self.take_data_pack();
                let added = p.add_plain(self.repo.key(), id, kind, data, self.compress);
                let full = added.is_err() || p.len() >= PACK_SIZE;
                let mut packs = self.data_packs.lock().unwrap();
                let shipped = if full {
                    packs.open -= 1;
                    Some(p)
                } else {
                    packs.idle.push(p);
                    None
                };
                drop(packs);
                self.data_pack_back.notify_one();
                added.map_err(zstd_err)?;
                shipped
            }
            BlobType::Tree => {
                let mut p = self.tree_pack.lock().unwrap();
                p.add_plain(self.repo.key(), id, kind, data, self.compress)
                    .map_err(zstd_err)?;
                (p.len() >= PACK_SIZE).then(|| std::mem::take(&mut *p))
            }
        };
        match kind {
            BlobType::Data => &self.counters.data_blobs,
            BlobType::Tree => &self.counters.tree_blobs,
        }
        .fetch_add(1, Ordering::Relaxed);
        if let Some(p) = full {
            self.ship(p)?;
        }
        Ok(id)
    }

    /// An idle data pack, or a new one while fewer than `max_data_packs` are open; else
    /// waits for one to come back.
    fn take_data_pack(&self) -> PackBuilder {
        let mut packs = self.data_packs.lock().unwrap();
        loop {
            if let Some(p) = packs.idle.pop() {
                return p;
            }
            if packs.open < self.max_data_packs {
                packs.open += 1;
                return PackBuilder::with_capacity(PACK_SIZE + (1 << 20));
            }
            packs = self.data_pack_back.wait(packs).unwrap();
        }
    }

    fn ship(&self, p: PackBuilder) -> Result<()> {
        if p.is_empty() {
            return Ok(());
        }
        let (bytes, blobs, id) = p.finish_hashed(self.repo.key());
        self.counters
            .data_added
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        let tx = self.uploads.lock().unwrap().clone();
        tx.ok_or_else(|| RepoError::Invalid("pack upload already closed".into()))?
            .blocking_send((bytes, blobs, id))
            .map_err(|_| {
                RepoError::Invalid("pack upload stopped (an earlier upload failed)".into())
            })
    }

    fn flush(&self) -> Result<()> {
        let packs = std::mem::take(&mut self.data_packs.lock().unwrap().idle);
        for d in packs {
            self.ship(d)?;
        }
        let t = std::mem::take(&mut *self.tree_pack.lock().unwrap());
        self.ship(t)
    }

    /// A buffer for the next chunk.
    fn chunk_buffer(&self) -> Vec<u8> {
        self.spare_buffers
            .lock()
            .unwrap()
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(crate::chunker::MAX_SIZE))
    }

    /// Takes back a chunk's buffer once its blob is saved.
    fn return_buffer(&self, buf: Vec<u8>) {
        let mut spare = self.spare_buffers.lock().unwrap();
        if spare.len() < SPARE_BUFFERS {
            spare.push(buf);
        }
    }

    fn report(&self, force: bool) {
        {
            let mut last = self.last_report.lock().unwrap();
            if !force && last.elapsed().as_millis() < 200 {
                return;
            }
            *last = Instant::now();
        }
        (self.progress)(&RestoreProgress {
            total_bytes: 0,
            bytes_done: self.counters.bytes_done.load(Ordering::Relaxed),
            total_files: 0,
            files_done: self.counters.files_done.load(Ordering::Relaxed),
        });
    }
}

/// A chunk on its way to a blob thread, and where its id goes.
struct ChunkJob {
    data: Vec<u8>,
    reply: cb::Sender<Result<Id>>,
}

/// File threads. More than CPUs: on small files a file thread mostly waits for the disk
/// (open, read, on a cold cache), and reading eight files at once keeps the device's queue
/// full. Measured on Go's source tree (11,478 files, 156 MiB, caches dropped, 2 CPUs): 2
/// threads 1.50–1.72 s, 8 threads 1.19–1.36 s, restic 2.36–3.19 s.
const FILE_THREADS: usize = 8;

/// Turns for chunking large files: each holds up to [`chunk_stream`]'s bytes in flight, so
/// their number, not the number of file threads, bounds the memory a backup takes.
struct LargeFiles {
    give: cb::Sender<()>,
    take: cb::Receiver<()>,
}

/// A turn, given back when dropped.
struct LargeFileTurn<'a>(&'a LargeFiles);

impl LargeFiles {
    fn new(turns: usize) -> Self {
        let (give, take) = cb::bounded(turns);
        for _ in 0..turns {
            let _ = give.send(());
        }
        LargeFiles { give, take }
    }

    fn take(&self) -> LargeFileTurn<'_> {
        // The sender lives in self: recv cannot fail while self does.
        let _ = self.take.recv();
        LargeFileTurn(self)
    }
}

impl Drop for LargeFileTurn<'_> {
    fn drop(&mut self) {
        let _ = self.0.give.send(());
    }
}

/// A file on its way to a file thread.
struct FileJob {
    path: PathBuf,
    reply: cb::Sender<Result<Vec<Id>>>,
}

/// Reads and chunks a stream, sending chunks to the blob threads with a bounded number in
/// flight; returns the content ids in order.
fn chunk_stream<R: Read>(
    reader: R,
    pol: Pol,
    chunks: &cb::Sender<ChunkJob>,
    saver: &Saver,
) -> Result<(Vec<Id>, u64)> {
    const IN_FLIGHT: usize = 6;
    /// Chunk bytes in flight from one file: 8 MiB chunks (long runs without a cut, as in
    /// some compressible data) would otherwise hold 48 MiB per file thread.
    const IN_FLIGHT_BYTES: usize = 12 << 20;
    let mut chunker = Chunker::new(reader, pol);
    let mut pending: std::collections::VecDeque<(cb::Receiver<Result<Id>>, usize)> =
        Default::default();
    let mut pending_bytes = 0;
    let mut ids = Vec::new();
    let mut size = 0u64;
    loop {
        let mut data = saver.chunk_buffer();
        let next = chunker
            .next_chunk_into(&mut data)
            .map_err(|e| RepoError::Invalid(format!("read: {e}")))?;
        if next.is_none() {
            saver.return_buffer(data);
            break;
        }
        size += data.len() as u64;
        let len = data.len();
        saver
            .counters
            .bytes_done
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        let (tx, rx) = cb::bounded(1);
        chunks
            .send(ChunkJob { data, reply: tx })
            .map_err(|_| RepoError::Invalid("blob workers stopped".into()))?;
        pending.push_back((rx, len));
        pending_bytes += len;
        while pending.len() >= IN_FLIGHT || pending_bytes >= IN_FLIGHT_BYTES {
            let (rx, len) = pending.pop_front().unwrap();
            pending_bytes -= len;
            ids.push(recv(rx)?);
        }
        saver.report(false);
    }
    for (rx, _) in pending {
        ids.push(recv(rx)?);
    }
    Ok((ids, size))
}

/// Reads a file and stores its content; returns the content ids in order. A file shorter
/// than the chunker's minimum chunk is one chunk whatever the polynomial, so it is read
/// whole and saved on this thread: no chunker buffers, no hand-off to a blob thread.
fn save_file(
    mut f: std::fs::File,
    pol: Pol,
    chunks: &cb::Sender<ChunkJob>,
    saver: &Saver,
    large: &LargeFiles,
) -> Result<Vec<Id>> {
    let size = f.metadata().map(|m| m.len()).unwrap_or(u64::MAX);
    if size >= crate::chunker::MIN_SIZE as u64 {
        let _turn = large.take();
        // The chunker reads big blocks itself: no BufReader (it would only add a copy).
        return chunk_stream(DirectReader::new(f), pol, chunks, saver).map(|(ids, _)| ids);
    }
    let mut data = Vec::with_capacity(size as usize + 1);
    f.read_to_end(&mut data)
        .map_err(|e| RepoError::Invalid(format!("read: {e}")))?;
    if data.len() >= crate::chunker::MIN_SIZE {
        // It grew while we looked: chunk what we read.
        return chunk_stream(std::io::Cursor::new(data), pol, chunks, saver).map(|(ids, _)| ids);
    }
    saver
        .counters
        .bytes_done
        .fetch_add(data.len() as u64, Ordering::Relaxed);
    if data.is_empty() {
        return Ok(Vec::new());
    }
    let id = saver.save_blob(BlobType::Data, &data)?;
    saver.report(false);
    Ok(vec![id])
}

fn recv<T>(rx: cb::Receiver<Result<T>>) -> Result<T> {
    rx.recv()
        .map_err(|_| RepoError::Invalid("worker stopped".into()))?
}

/// Node metadata from lstat.
fn node_from_metadata(name: &[u8], md: &std::fs::Metadata, names: &mut NameCache) -> Node {
    let ft = md.file_type();
    use std::os::unix::fs::FileTypeExt;
    let kind = if ft.is_dir() {
        "dir"
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_file() {
        "file"
    } else if ft.is_block_device() {
        "dev"
    } else if ft.is_char_device() {
        "chardev"
    } else if ft.is_fifo() {
        "fifo"
    } else {
        "socket"
    };
    Node {
        name: name.to_vec(),
        kind: kind.into(),
        mode: go_mode_from_unix(md.mode()),
        mtime: format_time(md.mtime(), md.mtime_nsec() as u32),
        atime: format_time(md.atime(), md.atime_nsec() as u32),
        ctime: format_time(md.ctime(), md.ctime_nsec() as u32),
        uid: md.uid(),
        gid: md.gid(),
        user: names.user(md.uid()),
        group: names.group(md.gid()),
        inode: md.ino(),
        device_id: md.dev(),
        size: if ft.is_file() { md.size() } else { 0 },
        links: md.nlink(),
        device: if ft.is_block_device() || ft.is_char_device() {
            md.rdev()
        } else {
            0
        },
        content: if ft.is_file() { Some(Vec::new()) } else { None },
        ..Default::default()
    }
}

#[derive(Default)]
struct NameCache {
    users: HashMap<u32, String>,
    groups: HashMap<u32, String>,
}

impl NameCache {
    fn user(&mut self, uid: u32) -> String {
        self.users
            .entry(uid)
            .or_insert_with(|| crate::sys::user_name(uid).unwrap_or_default())
            .clone()
    }
    fn group(&mut self, gid: u32) -> String {
        self.groups
            .entry(gid)
            .or_insert_with(|| crate::sys::group_name(gid).unwrap_or_default())
            .clone()
    }
}

fn same_time(a: &str, b: &str) -> bool {
    match (parse_time(a), parse_time(b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

/// restic's change detection: same type, size, mtime, ctime and inode.
fn unchanged(old: &Node, new: &Node) -> bool {
    old.kind == "file"
        && new.kind == "file"
        && old.size == new.size
        && old.inode == new.inode
        && same_time(&old.mtime, &new.mtime)
        && same_time(&old.ctime, &new.ctime)
        && old.content.is_some()
}

struct Walker<'a> {
    saver: &'a Saver,
    files: cb::Sender<FileJob>,
    names: NameCache,
}

impl Walker<'_> {
    fn load_parent(&self, id: Option<Id>) -> Result<HashMap<Vec<u8>, Node>> {
        let Some(id) = id else {
            return Ok(HashMap::new());
        };
        let tree = self.saver.rt.block_on(self.saver.repo.load_tree(&id))?;
        Ok(tree
            .nodes
            .into_iter()
            .map(|n| (n.name.clone(), n))
            .collect())
    }

    /// Builds and saves the tree of `entries`; returns its id.
    fn save_dir(&mut self, entries: Vec<DirEntry>, parent: Option<Id>) -> Result<Id> {
        let parent = self.load_parent(parent)?;
        let mut nodes: Vec<Node> = Vec::with_capacity(entries.len());
        let mut waits: Vec<(usize, cb::Receiver<Result<Vec<Id>>>)> = Vec::new();
        let mut subdirs: Vec<(usize, PathBuf, Option<Layout>)> = Vec::new();
        let mut entries = entries;
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        for DirEntry { name, path, only } in entries {
            let md = std::fs::symlink_metadata(&path).map_err(|e| RepoError::io(&path, e))?;
            if only.is_some() && !md.is_dir() {
                return Err(RepoError::Invalid(format!(
                    "{} is on the way to a backup target but is not a directory",
                    path.display()
                )));
            }
            let mut node = node_from_metadata(&name, &md, &mut self.names);
            // Extended attributes as restic records them; unreadable ones lose no file data.
            match crate::xattr::read(&path) {
                Ok(attrs) => node.extended_attributes = attrs,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot read extended attributes")
                }
            }
            let old = parent.get(&name);
            match node.kind.as_str() {
                "file" => {
                    if let Some(old) = old.filter(|o| unchanged(o, &node)) {
                        node.content = old.content.clone();
                        self.saver
                            .counters
                            .files_unmodified
                            .fetch_add(1, Ordering::Relaxed);
                        self.saver
                            .counters
                            .files_done
                            .fetch_add(1, Ordering::Relaxed);
                    } else {
                        if old.is_some() {
                            &self.saver.counters.files_changed
                        } else {
                            &self.saver.counters.files_new
                        }
                        .fetch_add(1, Ordering::Relaxed);
                        let (tx, rx) = cb::bounded(1);
                        self.files
                            .send(FileJob {
                                path: path.clone(),
                                reply: tx,
                            })
                            .map_err(|_| RepoError::Invalid("file workers stopped".into()))?;
                        waits.push((nodes.len(), rx));
                    }
                }
                "dir" => subdirs.push((nodes.len(), path.clone(), only)),
                "symlink" => {
                    node.linktarget = std::fs::read_link(&path)
                        .map_err(|e| RepoError::io(&path, e))?
                        .into_os_string()
                        .into_vec_bytes();
                }
                _ => {}
            }
            nodes.push(node);
        }
        // Subdirectories while the file threads work on this directory's files.
        for (i, path, only) in subdirs {
            let old_sub = parent
                .get(&nodes[i].name)
                .filter(|o| o.kind == "dir")
                .and_then(|o| o.subtree);
            let children = match only {
                Some(layout) => layout_entries(layout)?,
                None => read_dir_entries(&path)?,
            };
            nodes[i].subtree = Some(self.save_dir(children, old_sub)?);
            self.saver.counters.dirs.fetch_add(1, Ordering::Relaxed);
        }
        for (i, rx) in waits {
            let content = recv(rx)?;
            self.saver
                .counters
                .files_done
                .fetch_add(1, Ordering::Relaxed);
            nodes[i].content = Some(content);
        }
        let tree = Tree { nodes };
        self.saver.save_blob(BlobType::Tree, &tree.to_bytes())
    }
}

trait IntoVecBytes {
    fn into_vec_bytes(self) -> Vec<u8>;
}
impl IntoVecBytes for std::ffi::OsString {
    fn into_vec_bytes(self) -> Vec<u8> {
        use std::os::unix::ffi::OsStringExt;
        self.into_vec()
    }
}

/// An entry of a directory being saved: its name in the tree, where it is, and for a
/// directory on the way to backup targets, which of its entries to store.
struct DirEntry {
    name: Vec<u8>,
    path: PathBuf,
    only: Option<Layout>,
}

fn read_dir_entries(dir: &Path) -> Result<Vec<DirEntry>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| RepoError::io(dir, e))? {
        let e = e.map_err(|e| RepoError::io(dir, e))?;
        out.push(DirEntry {
            name: e.file_name().as_bytes().to_vec(),
            path: e.path(),
            only: None,
        });
    }
    Ok(out)
}

/// The entries one level of a target layout stores.
fn layout_entries(layout: Layout) -> Result<Vec<DirEntry>> {
    if let Some(dir) = layout.contents_of {
        return read_dir_entries(&dir);
    }
    Ok(layout
        .entries
        .into_iter()
        .map(|(name, e)| match e {
            LayoutEntry::Target(path) => DirEntry {
                name,
                path,
                only: None,
            },
            LayoutEntry::Between { path, below } => DirEntry {
                name,
                path,
                only: Some(below),
            },
        })
        .collect())
}

/// restic 0.14's choice of parent: the latest snapshot, not newer than the backup, of the same
/// host whose paths include all of the new backup's paths.
pub fn latest_parent(
    snapshots: Vec<Snapshot>,
    host: &str,
    paths: &[String],
    now: i64,
) -> Option<Snapshot> {
    snapshots
        .into_iter()
        .filter(|s| s.hostname == host && s.unix_time().0 <= now)
        .filter(|s| paths.iter().all(|p| s.paths.contains(p)))
        .max_by_key(|s| s.unix_time())
}

impl Repository {
    /// Backs up `source` into a new snapshot.
    pub async fn backup(
        &self,
        source: BackupSource,
        options: BackupOptions,
        progress: ProgressFn,
    ) -> Result<BackupSummary> {
        let started = Instant::now();
        let lock = self.lock(false).await?;
        let result = self.backup_locked(source, options, progress, started).await;
        lock.release().await;
        result
    }

    async fn backup_locked(
        &self,
        source: BackupSource,
        options: BackupOptions,
        progress: ProgressFn,
        started: Instant,
    ) -> Result<BackupSummary> {
        let index = self.index().await?;
        let pol = self.polynomial()?;
        let host = options.host.clone().unwrap_or_else(crate::sys::hostname);
        let cwd = crate::targets::working_dir()?;
        let (paths, layout) = match &source {
            BackupSource::Paths(targets) => {
                if targets.is_empty() {
                    return Err(RepoError::Invalid("nothing to back up: no paths".into()));
                }
                for p in targets {
                    std::fs::symlink_metadata(p).map_err(|e| RepoError::io(p, e))?;
                }
                let (paths, layout) = crate::targets::layout(&cwd, targets)?;
                (paths, Some(layout))
            }
            BackupSource::Contents(dir) => {
                let md = std::fs::metadata(dir).map_err(|e| RepoError::io(dir, e))?;
                if !md.is_dir() {
                    return Err(RepoError::Invalid(format!(
                        "{} is not a directory: a volume backup needs the volume's directory",
                        dir.display()
                    )));
                }
                let abs = crate::targets::absolute(&cwd, dir);
                let layout = Layout {
                    contents_of: Some(abs.clone()),
                    ..Default::default()
                };
                (vec![abs.to_string_lossy().into_owned()], Some(layout))
            }
            BackupSource::Stream { filename, .. } => (vec![format!("/{filename}")], None),
        };
        let now = jiff::Timestamp::now();
        let parent = if options.no_parent {
            None
        } else if let Some(p) = options.parent.clone() {
            Some(p)
        } else {
            let (snaps, _) = self.snapshots_skipping_unreadable().await?;
            latest_parent(snaps, &host, &paths, now.as_second())
        };
        let known: HashSet<(BlobType, Id)> = index.iter().map(|(k, id, _)| (k, *id)).collect();
        let (up_tx, mut up_rx) = tokio::sync::mpsc::channel::<PackUpload>(1);
        let workers = if options.workers > 0 {
            options.workers
        } else {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        };
        let saver = Arc::new(Saver {
            repo: self.clone(),
            rt: tokio::runtime::Handle::current(),
            known: Mutex::new(known),
            data_packs: Mutex::new(DataPacks::default()),
            data_pack_back: std::sync::Condvar::new(),
            max_data_packs: workers,
            tree_pack: Mutex::new(PackBuilder::default()),
            spare_buffers: Mutex::new(Vec::new()),
            uploads: Mutex::new(Some(up_tx)),
            counters: Counters {
                files_new: 0.into(),
                files_changed: 0.into(),
                files_unmodified: 0.into(),
                dirs: 0.into(),
                data_blobs: 0.into(),
                tree_blobs: 0.into(),
                data_added: 0.into(),
                files_done: 0.into(),
                bytes_done: 0.into(),
            },
            compress: self.compression(),
            progress,
            last_report: Mutex::new(Instant::now()),
        });

        // Uploaders: store packs concurrently, collect their index entries.
        let backend = self.backend().clone();
        let uploader = tokio::spawn(async move {
            let mut done: Vec<Uploaded> = Vec::new();
            let mut running = futures::stream::FuturesUnordered::new();
            use futures::StreamExt;
            loop {
                tokio::select! {
                    biased;
                    Some(r) = running.next(), if !running.is_empty() => {
                        let r: Result<Uploaded> = r;
                        done.push(r?);
                    }
                    msg = up_rx.recv(), if running.len() < UPLOADS => {
                        let Some((bytes, blobs, id)) = msg else { break };
                        let backend = backend.clone();
                        running.push(async move {
                            backend
                                .save(&Handle::new(FileType::Pack, id.to_hex()), Bytes::from(bytes))
                                .await?;
                            Ok((id, blobs))
                        });
                    }
                }
            }
            while let Some(r) = running.next().await {
                done.push(r?);
            }
            Ok::<_, RepoError>(done)
        });

        let s2 = saver.clone();
        let parent_tree = parent.as_ref().map(|p| p.tree);
        let walk = tokio::task::spawn_blocking(move || -> Result<Id> {
            let saver = &*s2;
            let (chunk_tx, chunk_rx) = cb::bounded::<ChunkJob>(workers * 2);
            let (file_tx, file_rx) = cb::unbounded::<FileJob>();
            // As many large files chunked at once as before there were file threads.
            let large = &LargeFiles::new(workers.max(2));
            std::thread::scope(|scope| {
                for _ in 0..workers {
                    let rx = chunk_rx.clone();
                    scope.spawn(move || {
                        for job in rx {
                            let _ = job.reply.send(saver.save_blob(BlobType::Data, &job.data));
                            saver.return_buffer(job.data);
                        }
                    });
                }
                for _ in 0..FILE_THREADS.max(workers) {
                    let rx = file_rx.clone();
                    let ctx = chunk_tx.clone();
                    scope.spawn(move || {
                        for job in rx {
                            let r = std::fs::File::open(&job.path)
                                .map_err(|e| RepoError::io(&job.path, e))
                                .and_then(|f| save_file(f, pol, &ctx, saver, large))
                                .map_err(|e| match e {
                                    RepoError::Invalid(m) => {
                                        RepoError::Invalid(format!("{}: {m}", job.path.display()))
                                    }
                                    e => e,
                                });
                            let _ = job.reply.send(r);
                        }
                    });
                }
                drop(chunk_rx);
                let mut walker = Walker {
                    saver,
                    files: file_tx,
                    names: NameCache::default(),
                };
                let root = match source {
                    BackupSource::Paths(_) | BackupSource::Contents(_) => {
                        let layout = layout.expect("a layout for paths");
                        walker.save_dir(layout_entries(layout)?, parent_tree)
                    }
                    BackupSource::Stream { reader, filename } => {
                        let (ids, size) = chunk_stream(reader, pol, &chunk_tx, saver)?;
                        let t = crate::tree::format_now();
                        let node = Node {
                            name: filename.into_bytes(),
                            kind: "file".into(),
                            mode: 0o644,
                            mtime: t.clone(),
                            atime: t.clone(),
                            ctime: t,
                            uid: crate::sys::uid(),
                            gid: crate::sys::gid(),
                            size,
                            content: Some(ids),
                            ..Default::default()
                        };
                        saver.counters.files_new.fetch_add(1, Ordering::Relaxed);
                        saver.counters.files_done.fetch_add(1, Ordering::Relaxed);
                        saver.save_blob(BlobType::Tree, &Tree { nodes: vec![node] }.to_bytes())
                    }
                };
                drop(walker);
                drop(chunk_tx);
                root
            })
        });
        let walked = walk.await.expect("backup walker panicked");
        let flushed = {
            let s3 = saver.clone();
            tokio::task::spawn_blocking(move || s3.flush())
                .await
                .expect("flush panicked")
        };
        saver.report(true);
        saver.uploads.lock().unwrap().take();
        let progress_saver = saver;
        let uploaded = uploader.await.expect("uploader panicked");
        let root = walked?;
        flushed?;
        let uploaded = uploaded?;

        // Index, then snapshot.
        for chunk in uploaded.chunks(INDEX_BLOBS / 16 + 1).map(|c| c.to_vec()) {
            let idx = IndexJson {
                supersedes: Vec::new(),
                packs: chunk
                    .iter()
                    .map(|(id, blobs)| IndexPackJson::from_packed(*id, blobs))
                    .collect(),
            };
            let json = serde_json::to_vec(&idx).expect("index serializes");
            self.save_unpacked(FileType::Index, json).await?;
        }
        self.invalidate_index().await;
        let snap = Snapshot {
            id: Id::default(),
            time: format_time(now.as_second(), now.subsec_nanosecond().max(0) as u32),
            parent: parent.as_ref().map(|p| p.id),
            tree: root,
            paths,
            hostname: host,
            username: crate::sys::username(),
            uid: crate::sys::uid(),
            gid: crate::sys::gid(),
            excludes: Vec::new(),
            tags: options.tags.clone(),
            original: None,
            program_version: Some(format!("ferry {}", env!("CARGO_PKG_VERSION"))),
        };
        let snapshot_id = self.save_snapshot(&snap).await?;
        let c = &progress_saver.counters;
        Ok(BackupSummary {
            snapshot_id,
            parent: snap.parent,
            files_new: c.files_new.load(Ordering::Relaxed),
            files_changed: c.files_changed.load(Ordering::Relaxed),
            files_unmodified: c.files_unmodified.load(Ordering::Relaxed),
            dirs: c.dirs.load(Ordering::Relaxed),
            data_blobs: c.data_blobs.load(Ordering::Relaxed),
            tree_blobs: c.tree_blobs.load(Ordering::Relaxed),
            data_added: c.data_added.load(Ordering::Relaxed),
            total_files_processed: c.files_done.load(Ordering::Relaxed),
            total_bytes_processed: c.bytes_done.load(Ordering::Relaxed),
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::LargeFiles;

    #[test]
    fn large_files_are_chunked_a_bounded_number_at_once() {
        let large = LargeFiles::new(2);
        let first = large.take();
        let second = large.take();
        assert!(large.take.is_empty(), "no third turn while two are out");
        drop(first);
        assert_eq!(large.take.len(), 1, "a turn comes back when dropped");
        let third = large.take();
        assert!(large.take.is_empty());
        drop((second, third));
        assert_eq!(large.take.len(), 2);
    }
}
