//! One batch of a restore: the files it writes, the blobs each pack range holds and where they
//! go, and what the worker threads share while they decode and write (the key, progress, the
//! open-file budget, reusable buffers).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use super::target::TargetDir;
use crate::crypto::Key;
use crate::error::{RepoError, Result};
use crate::id::Id;
use crate::index::BlobLocation;
use crate::restore_report::Warnings;
use crate::restore_report::{ProgressFn, RestoreProgress};
use crate::tree::Node;

/// Why a file could not be restored.
#[derive(Debug, Clone)]
pub(super) struct Fault {
    pub(super) pack: Option<Id>,
    pub(super) blob: Option<Id>,
    pub(super) reason: String,
}

pub(super) struct FileTarget {
    /// Relative to the target directory; for a device, its absolute path.
    pub(super) rel: PathBuf,
    pub(super) node: Node,
    pub(super) device: bool,
    /// Blobs in the file's content (its writes).
    pub(super) blobs: u32,
    /// The content's length (the index's blob lengths added up): the file's size.
    pub(super) len: u64,
    /// The name a file of several blobs has until it is complete.
    pub(super) tmp: Option<PathBuf>,
    pub(super) remaining: AtomicU32,
    /// Whether this restore created the file (so removes it if the restore fails first).
    pub(super) created: AtomicBool,
    /// Set by the first blob that fails; the file is then removed, not finished.
    pub(super) damaged: OnceLock<Fault>,
    /// The file, open while blobs remain, and the right to write
    /// it: one writer per file at a time. Two workers writing one file only contend on the
    /// kernel's inode lock (spinning on it), so the second one decodes its range meanwhile.
    /// At most [`RestoreOptions::open_files`] files stay open between writes.
    pub(super) open: Mutex<Option<std::fs::File>>,
}

/// Decoded plaintext a worker may hold back while the files it goes to are being written by
/// other workers; beyond this it waits for them.
pub(super) const WRITE_BATCH: usize = 8 << 20;

#[derive(Clone, Copy)]
pub(super) struct BlobTarget {
    pub(super) file: u32,
    pub(super) offset: u64,
}

pub(super) struct PlannedBlob {
    pub(super) id: Id,
    pub(super) loc: BlobLocation,
    pub(super) targets: Vec<BlobTarget>,
}

pub(super) struct RangeJob {
    pub(super) pack: Id,
    pub(super) start: u64,
    pub(super) end: u64,
    pub(super) blobs: Vec<PlannedBlob>,
}

pub(super) struct Shared {
    pub(super) key: Key,
    pub(super) files: Vec<FileTarget>,
    pub(super) target: Option<Arc<TargetDir>>,
    pub(super) warnings: Arc<Warnings>,
    pub(super) progress: ProgressFn,
    pub(super) total: Mutex<RestoreProgress>,
    pub(super) bytes_done: AtomicU64,
    pub(super) bytes_written: AtomicU64,
    pub(super) files_done: AtomicU64,
    /// A fatal error (the target cannot be written): stop fetching.
    pub(super) failed: AtomicBool,
    pub(super) last_report: Mutex<Instant>,
    /// Decoding buffers, one set per busy worker, reused across ranges.
    pub(super) scratch: Mutex<Vec<Scratch>>,
    /// Files whose descriptor is kept open between writes, and how many may be.
    pub(super) open_files: AtomicUsize,
    pub(super) keep_open: usize,
    /// The restore ends with a flush: start each large write's writeback at once (see
    /// [`Coalesce::flush`]). A device target always has it.
    pub(super) start_writeback: bool,
    /// Write the page-aligned middle of long runs with `O_DIRECT` (see
    /// [`super::write::Coalesce`]); cleared when the target's file system refuses it.
    pub(super) direct_writes: AtomicBool,
    /// Range buffers, at most one per fetch in flight, reused: allocating (and freeing)
    /// megabytes per range costs page faults and lets the allocator's heaps grow.
    pub(super) buffers: Mutex<Vec<Vec<u8>>>,
}

impl Shared {
    pub(super) fn report(&self, force: bool) {
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

    pub(super) fn display(&self, rel: &Path) -> PathBuf {
        match &self.target {
            Some(t) => t.display(rel),
            None => rel.to_path_buf(),
        }
    }

    pub(super) fn target(&self) -> Result<&TargetDir> {
        self.target
            .as_deref()
            .ok_or_else(|| RepoError::Invalid("restore: no target directory".into()))
    }
}

/// A worker's buffers: decrypted (still compressed) blobs, the decoded plaintext of up to
/// [`WRITE_BATCH`] bytes, the decoded blobs whose ids are still to be checked, and where
/// each checked piece goes. Both byte buffers keep their length (the largest seen), so they
/// are never zeroed again. The plaintext buffer is page-aligned, so that a blob placed at its
/// file offset's position within a page can be written directly.
#[derive(Default)]
pub(super) struct Scratch {
    pub(super) decrypted: Vec<u8>,
    pub(super) plain: crate::sys::PageAligned,
    pub(super) unhashed: Vec<Unhashed>,
    pub(super) ids: Vec<crate::id::Id>,
    pub(super) writes: Vec<Segment>,
}

/// A decoded blob (`plain[start..start + len]`, the job's blob `blob`) whose SHA-256 is
/// computed together with the next few ([`crate::id::Id::hash_each`]).
#[derive(Clone, Copy)]
pub(super) struct Unhashed {
    pub(super) blob: usize,
    pub(super) start: usize,
    pub(super) len: usize,
}

/// One blob's plaintext (`plain[start..end]` of the worker's buffer) at `offset` of a file.
#[derive(Clone, Copy)]
pub(super) struct Segment {
    pub(super) file: u32,
    pub(super) offset: u64,
    pub(super) start: usize,
    pub(super) end: usize,
    /// The whole blob is zeros.
    pub(super) zero: bool,
}
