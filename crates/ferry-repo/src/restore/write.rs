//! Writing decoded blobs into the restored files: one writer per file at a time (a worker that
//! finds a file busy keeps its blobs and decodes on), pieces that follow each other merged into
//! one positional write, all-zero pieces left as holes, early writeback when the restore ends
//! with a flush, and each file's finish (size, metadata, its real name) after its last blob.

use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};

use super::batch::{FileTarget, Segment, Shared};
use crate::error::{RepoError, Result};
use crate::fsmeta;
use crate::sys::{DIRECT_ALIGN, set_direct};

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
///
/// With `direct`, the page-aligned middle of a long run goes past the page cache
/// (`O_DIRECT`, switched on for that write only): the kernel neither allocates cache pages
/// for it nor copies into them (a seventh of a large restore's CPU), and a node's cache stays
/// its workloads'. That needs the run's bytes at the same position within a page in memory as
/// in the file, which is how the workers place long blobs ([`direct_padding`]); the run's
/// unaligned ends, and a run not so placed, are written through the page cache. The two never
/// share a page, so the kernel has no cached page to reconcile with a direct write.
pub(super) struct Coalesce<'a> {
    pub(super) file: &'a std::fs::File,
    pub(super) plain: &'a [u8],
    /// (file offset, buffer range) not yet written.
    pub(super) pending: Option<(u64, std::ops::Range<usize>)>,
    pub(super) written: u64,
    pub(super) start_writeback: bool,
    /// Direct writes on; cleared (for the whole restore) when the file system refuses.
    pub(super) direct: &'a AtomicBool,
}

/// Writes at least this long have their writeback started at once when the restore will be
/// flushed; smaller ones are left to the final flush (a syscall per small file would cost
/// more than it overlaps).
pub(super) const WRITEBACK_AT_ONCE: usize = 256 << 10;

/// Runs whose aligned middle is at least this long are written directly (with direct writes
/// on); shorter ones are not worth two `fcntl` calls and a synchronous wait.
pub(super) const DIRECT_AT_LEAST: usize = 256 << 10;

/// How far past `used` a blob of `len` bytes bound for `offset` should start in the worker's
/// page-aligned buffer so that its bytes sit at their file position within a page, when it is
/// long enough to be written directly; 0 otherwise.
pub(super) fn direct_padding(direct: bool, used: usize, offset: u64, len: usize) -> usize {
    if !direct || len < DIRECT_AT_LEAST {
        return 0;
    }
    let page = DIRECT_ALIGN as u64;
    ((offset % page + page - used as u64 % page) % page) as usize
}

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
        let Some((at, run)) = self.pending.take() else {
            return Ok(());
        };
        self.written += run.len() as u64;
        if let Some((middle_at, middle)) = self.direct_middle(at, &run) {
            self.write_cached(at, run.start..middle.start)?;
            self.write_direct(middle_at, middle.clone())?;
            return self.write_cached(middle_at + middle.len() as u64, middle.end..run.end);
        }
        self.write_cached(at, run)
    }

    /// The part of a run to write directly: its pages whole in the file and in memory.
    fn direct_middle(
        &self,
        at: u64,
        run: &std::ops::Range<usize>,
    ) -> Option<(u64, std::ops::Range<usize>)> {
        if !self.direct.load(Ordering::Relaxed) {
            return None;
        }
        let page = DIRECT_ALIGN as u64;
        let start = at.next_multiple_of(page);
        let end = (at + run.len() as u64) / page * page;
        if end < start + DIRECT_AT_LEAST as u64 {
            return None;
        }
        let from = run.start + (start - at) as usize;
        let middle = from..from + (end - start) as usize;
        let placed = (self.plain[middle.clone()].as_ptr() as usize).is_multiple_of(DIRECT_ALIGN);
        placed.then_some((start, middle))
    }

    fn write_direct(&mut self, at: u64, range: std::ops::Range<usize>) -> std::io::Result<()> {
        let refused = |e: &std::io::Error| e.raw_os_error() == Some(libc::EINVAL);
        match set_direct(self.file, true) {
            Ok(()) => {}
            Err(e) if refused(&e) => return self.refuse_direct(at, range),
            Err(e) => return Err(e),
        }
        let wrote = self.file.write_all_at(&self.plain[range.clone()], at);
        set_direct(self.file, false)?;
        match wrote {
            Err(e) if refused(&e) => self.refuse_direct(at, range),
            other => other,
        }
    }

    /// The file system (or this write's alignment) refuses `O_DIRECT`: write through the
    /// page cache, and do so from now on.
    fn refuse_direct(&mut self, at: u64, range: std::ops::Range<usize>) -> std::io::Result<()> {
        if self.direct.swap(false, Ordering::Relaxed) {
            tracing::debug!(
                "restore: the target refuses O_DIRECT writes; writing through the page cache"
            );
        }
        self.write_cached(at, range)
    }

    fn write_cached(&mut self, at: u64, range: std::ops::Range<usize>) -> std::io::Result<()> {
        let len = range.len();
        if len == 0 {
            return Ok(());
        }
        self.file.write_all_at(&self.plain[range], at)?;
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
        direct: &shared.direct_writes,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::{PageAligned, page_cache_of};

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + i / 4099) as u8).collect()
    }

    fn coalesce<'a>(
        file: &'a std::fs::File,
        plain: &'a [u8],
        direct: &'a AtomicBool,
    ) -> Coalesce<'a> {
        Coalesce {
            file,
            plain,
            pending: None,
            written: 0,
            start_writeback: false,
            direct,
        }
    }

    /// Writes `bytes` at file offset `at` from a page-aligned buffer, where they start at
    /// `at`'s position within a page (as the workers place long blobs), then returns the file
    /// and how many of its pages are in the page cache.
    fn write_run(direct: &AtomicBool, at: u64, bytes: &[u8]) -> (Vec<u8>, u64) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = std::fs::File::create(&path).unwrap();
        let start = direct_padding(true, 0, at, bytes.len());
        let mut plain = PageAligned::zeroed(start + bytes.len());
        plain[start..].copy_from_slice(bytes);
        let mut out = coalesce(&file, &plain, direct);
        out.add(at, start..start + bytes.len()).unwrap();
        out.flush().unwrap();
        assert_eq!(out.written, bytes.len() as u64);
        let (cached, _) = page_cache_of(&file).expect("cachestat (Linux 6.5)");
        (std::fs::read(&path).unwrap(), cached)
    }

    #[test]
    fn a_long_blob_is_placed_at_its_file_position_within_a_page() {
        for used in [0usize, 1, 4095, 4096, 5000, 3 << 20] {
            for offset in [0u64, 1, 100, 4095, 4096, 12_345_678] {
                let pad = direct_padding(true, used, offset, DIRECT_AT_LEAST);
                assert!(pad < DIRECT_ALIGN, "{used} {offset}: pad {pad}");
                assert_eq!(
                    (used + pad) % DIRECT_ALIGN,
                    (offset % DIRECT_ALIGN as u64) as usize,
                    "{used} {offset}"
                );
            }
        }
        assert_eq!(direct_padding(true, 1, 0, DIRECT_AT_LEAST - 1), 0, "short");
        assert_eq!(direct_padding(false, 1, 0, DIRECT_AT_LEAST), 0, "off");
    }

    #[test]
    fn a_direct_run_leaves_only_its_unaligned_ends_in_the_page_cache() {
        let bytes = pattern((2 << 20) + 5000);
        let at = 3 * 4096 + 100;
        let on = AtomicBool::new(true);
        let (content, cached) = write_run(&on, at, &bytes);
        assert_eq!(&content[at as usize..], &bytes[..]);
        assert!(content[..at as usize].iter().all(|&b| b == 0));
        // The page holding the run's first 3,996 bytes and the one holding its last ones.
        assert_eq!(cached, 2, "pages in the page cache after a direct write");
        assert!(on.load(Ordering::Relaxed), "direct writes still on");

        let (content, cached) = write_run(&AtomicBool::new(false), at, &bytes);
        assert_eq!(&content[at as usize..], &bytes[..]);
        assert!(
            cached >= 512,
            "through the page cache: {cached} pages cached"
        );
    }

    #[test]
    fn a_direct_write_refused_goes_through_the_page_cache_and_turns_them_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = std::fs::File::create(&path).unwrap();
        let bytes = pattern(1 << 20);
        let mut plain = PageAligned::zeroed(bytes.len());
        plain.copy_from_slice(&bytes);
        let on = AtomicBool::new(true);
        let mut out = coalesce(&file, &plain, &on);
        // An offset off the file system's block size: the kernel refuses it (EINVAL).
        out.write_direct(7, 0..bytes.len()).unwrap();
        assert!(!on.load(Ordering::Relaxed), "direct writes turned off");
        let content = std::fs::read(&path).unwrap();
        assert_eq!(&content[7..], &bytes[..]);
        // And the descriptor is back to writing through the page cache.
        let flags = rustix::fs::fcntl_getfl(&file).unwrap();
        assert!(!flags.contains(rustix::fs::OFlags::DIRECT));
    }
}
