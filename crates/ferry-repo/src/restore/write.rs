//! Writing decoded blobs into the restored files: one writer per file at a time (a worker that
//! finds a file busy keeps its blobs and decodes on), pieces that follow each other merged into
//! one positional write, all-zero pieces left as holes, early writeback when the restore ends
//! with a flush, and each file's finish (size, metadata, its real name) after its last blob.

use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;

use super::batch::{FileTarget, Segment, Shared};
use crate::error::{RepoError, Result};
use crate::fsmeta;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Wait {
    /// Wait for each file's lock.
    Yes,
    /// Skip (and keep) the segments of a file another worker is writing.
    No,
}

/// Writes the gathered segments file by file, in offset order, and removes the written ones.
pub(super) fn write_segments(
    shared: &Shared,
    plain: &[u8],
    writes: &mut Vec<Segment>,
    wait: Wait,
) -> Result<()> {
    writes.sort_unstable_by_key(|w| (w.file, w.offset));
    let mut kept = 0;
    let mut at = 0;
    while at < writes.len() {
        let file = writes[at].file;
        let end = at + writes[at..].iter().take_while(|w| w.file == file).count();
        let f = &shared.files[file as usize];
        let mut open = match f.open.try_lock() {
            Ok(open) => open,
            Err(std::sync::TryLockError::WouldBlock) if wait == Wait::No => {
                writes.copy_within(at..end, kept);
                kept += end - at;
                at = end;
                continue;
            }
            Err(std::sync::TryLockError::WouldBlock) => f.open.lock().unwrap(),
            Err(std::sync::TryLockError::Poisoned(p)) => panic!("{p}"),
        };
        write_file(shared, f, &mut open, plain, &writes[at..end])?;
        if open.is_some() && shared.open_files.load(Ordering::Relaxed) > shared.keep_open {
            *open = None;
            shared.open_files.fetch_sub(1, Ordering::Relaxed);
        }
        at = end;
    }
    writes.truncate(kept);
    Ok(())
}

/// Holes are punched at this granularity: all-zero pieces of a blob are not written.
pub(super) const SPARSE_PIECE: usize = 64 * 1024;

/// Opens the file blobs go to: a device as it is; any other file created by its first
/// write (a file of several blobs under its temporary name), then reopened if it had to
/// be closed between writes. Called with the file's lock held.
pub(super) fn open_for_write(shared: &Shared, f: &FileTarget) -> Result<std::fs::File> {
    let io = |e| RepoError::io(shared.display(&f.rel), e);
    if f.device {
        return std::fs::OpenOptions::new()
            .write(true)
            .read(true)
            .open(&f.rel)
            .map_err(io);
    }
    let target = shared.target()?;
    let name = f.tmp.as_ref().unwrap_or(&f.rel);
    if f.created.load(Ordering::Acquire) {
        return target.open_write(name).map_err(io);
    }
    let file = target.create_file(name).map_err(io)?;
    // Marks the file as ours: removed if the restore fails before it is complete.
    f.created.store(true, Ordering::Release);
    Ok(file)
}

/// Positional writes that merge pieces following each other in the file and in the buffer.
pub(super) struct Coalesce<'a> {
    pub(super) file: &'a std::fs::File,
    pub(super) plain: &'a [u8],
    /// (file offset, buffer range) not yet written.
    pub(super) pending: Option<(u64, std::ops::Range<usize>)>,
    pub(super) written: u64,
    pub(super) start_writeback: bool,
}

/// Writes at least this long have their writeback started at once when the restore will be
/// flushed; smaller ones are left to the final flush (a syscall per small file would cost
/// more than it overlaps).
pub(super) const WRITEBACK_AT_ONCE: usize = 256 << 10;

impl Coalesce<'_> {
    pub(super) fn add(
        &mut self,
        offset: u64,
        piece: std::ops::Range<usize>,
    ) -> std::io::Result<()> {
        if let Some((at, run)) = &mut self.pending
            && *at + run.len() as u64 == offset
            && run.end == piece.start
        {
            run.end = piece.end;
            return Ok(());
        }
        self.flush()?;
        self.pending = Some((offset, piece));
        Ok(())
    }

    pub(super) fn flush(&mut self) -> std::io::Result<()> {
        if let Some((at, run)) = self.pending.take() {
            self.written += run.len() as u64;
            let len = run.len();
            self.file.write_all_at(&self.plain[run], at)?;
            if self.start_writeback && len >= WRITEBACK_AT_ONCE {
                // The disk writes these pages while the workers decode the next ones, so
                // the final flush finds little left to wait for. Only a hint: an error
                // here would come back from the flush.
                // SAFETY: a plain syscall on a descriptor this struct borrows.
                unsafe {
                    libc::sync_file_range(
                        self.file.as_raw_fd(),
                        at as libc::off64_t,
                        len as libc::off64_t,
                        libc::SYNC_FILE_RANGE_WRITE,
                    );
                }
            }
        }
        Ok(())
    }
}

/// Writes one file's segments (its lock held), then counts each as one of its blobs done.
pub(super) fn write_file(
    shared: &Shared,
    f: &FileTarget,
    open: &mut Option<std::fs::File>,
    plain: &[u8],
    segments: &[Segment],
) -> Result<()> {
    if f.damaged.get().is_some() {
        // Another blob of this file is bad: the file will be removed, skip the writes.
        for _ in segments {
            finish_one(shared, f, open)?;
        }
        return Ok(());
    }
    let io = |e| RepoError::io(shared.display(&f.rel), e);
    if open.is_none() {
        *open = Some(open_for_write(shared, f)?);
        shared.open_files.fetch_add(1, Ordering::Relaxed);
    }
    let file = open.as_ref().expect("just opened");
    let mut out = Coalesce {
        file,
        plain,
        pending: None,
        written: 0,
        // A device is fsynced at its end in any case.
        start_writeback: shared.start_writeback || f.device,
    };
    let mut written_end = 0u64;
    let mut device_zeros = Vec::new();
    for s in segments {
        // Write the non-zero pieces; a zero piece is skipped where the target already reads
        // back zeros (always true for a file we created; checked by reading for a device).
        let mut pos = s.start;
        while pos < s.end {
            let end = (pos + SPARSE_PIECE).min(s.end);
            let piece = &plain[pos..end];
            let at = s.offset + (pos - s.start) as u64;
            let mut needs_write = zero_needs_write(s.zero, piece);
            if !needs_write && f.device {
                device_zeros.resize(piece.len(), 0);
                let n = file.read_at(&mut device_zeros, at).map_err(io)?;
                needs_write = n < piece.len() || !is_zero(&device_zeros);
            }
            if needs_write {
                out.add(at, pos..end).map_err(io)?;
                written_end = written_end.max(at + piece.len() as u64);
            }
            pos = end;
        }
    }
    out.flush().map_err(io)?;
    if f.blobs == 1 && !f.device && written_end < f.len {
        // Trailing zeros were skipped: the size comes from a hole.
        file.set_len(f.len).map_err(io)?;
    }
    shared
        .bytes_written
        .fetch_add(out.written, Ordering::Relaxed);
    let done: usize = segments.iter().map(|s| s.end - s.start).sum();
    shared.bytes_done.fetch_add(done as u64, Ordering::Relaxed);
    for _ in segments {
        finish_one(shared, f, open)?;
    }
    Ok(())
}

/// Counts one of the file's blobs as done (its lock held). The last one finishes the file:
/// its size and metadata, then its real name, and closes it; or, when a blob was damaged,
/// removes what was written.
pub(super) fn finish_one(
    shared: &Shared,
    f: &FileTarget,
    open: &mut Option<std::fs::File>,
) -> Result<()> {
    if f.remaining.fetch_sub(1, Ordering::AcqRel) != 1 {
        return Ok(());
    }
    let file = open.take();
    if file.is_some() {
        shared.open_files.fetch_sub(1, Ordering::Relaxed);
    }
    let display = shared.display(&f.rel);
    let io = |e| RepoError::io(&display, e);
    if f.damaged.get().is_some() {
        if !f.device
            && f.created.load(Ordering::Acquire)
            && let Some(target) = &shared.target
        {
            let _ = target.remove_file(f.tmp.as_ref().unwrap_or(&f.rel));
        }
        return Ok(());
    }
    let Some(file) = file else {
        return Err(RepoError::Invalid(format!(
            "{}: restore finished a file without writing it",
            display.display()
        )));
    };
    if f.device {
        file.sync_all().map_err(io)?;
    } else {
        if f.tmp.is_some() {
            file.set_len(f.len).map_err(io)?;
        }
        fsmeta::apply_to_fd(&file, &f.node, &display, &shared.warnings).map_err(io)?;
        if let Some(tmp) = &f.tmp {
            let target = shared.target()?;
            if let Err(e) = target.rename(tmp, &f.rel) {
                let _ = target.remove_file(tmp);
                return Err(io(e));
            }
        }
    }
    shared.files_done.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Whether a piece must be written: not when the whole blob is zero, else when it has data.
pub(super) fn zero_needs_write(blob_is_zero: bool, piece: &[u8]) -> bool {
    !blob_is_zero && !is_zero(piece)
}

pub(super) fn is_zero(b: &[u8]) -> bool {
    // Word-at-a-time check; fast enough to be free next to decryption.
    let (pre, mid, post) = unsafe { b.align_to::<u128>() };
    pre.iter().all(|&x| x == 0) && mid.iter().all(|&x| x == 0) && post.iter().all(|&x| x == 0)
}
