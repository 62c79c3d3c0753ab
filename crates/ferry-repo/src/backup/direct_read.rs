//! Reading a backup's large files past the page cache.
//!
//! A backup reads each byte once. Through the page cache the kernel first fills freshly
//! allocated cache pages and then copies them out; on the 2-core VM a cold 1 GiB file cost
//! 0.33–0.63 s of system time read that way and 0.02–0.07 s with `O_DIRECT` (`dd` with 512 KiB
//! and 4 MiB blocks), a tenth of the whole backup's CPU. On a data mover's node it also keeps
//! the backup from evicting the workloads' own cached pages.
//!
//! A file that is already mostly in the page cache is read through it (a direct read would go
//! to the disk again), and so is everything the file system or the caller's buffer does not
//! allow: the reader drops `O_DIRECT` at the first read it cannot do directly and goes on.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;

use crate::sys::{PageAligned, page_cache_of, set_direct};
use crossbeam_channel as cb;

/// How much a read-ahead thread reads at a time, and how many pieces it may have read ahead.
const PIECE: usize = 1 << 20;
const AHEAD: usize = 3;

/// A file read with `O_DIRECT` while it can be, then through the page cache.
///
/// Direct reads get no read-ahead from the kernel, and a file thread that waited for each one
/// would stop chunking meanwhile (the backup of one 1 GiB file went from 2.93 s to 3.28 s that
/// way), so a thread of the reader's own reads up to [`AHEAD`] pieces ahead.
#[derive(Debug)]
pub struct DirectReader {
    file: File,
    /// Bytes handed to the caller so far: where buffered reading goes on from.
    offset: u64,
    ahead: Option<ReadAhead>,
}

#[derive(Debug)]
struct ReadAhead {
    full: cb::Receiver<io::Result<(PageAligned, usize)>>,
    empty: cb::Sender<PageAligned>,
    /// The piece being handed out: the buffer, its length, how much of it is handed out.
    current: Option<(PageAligned, usize, usize)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DirectReader {
    /// Reads `file` (opened for reading, at offset 0) directly if less than a quarter of it
    /// is cached and its file system takes `O_DIRECT`; else as it is. A kernel without
    /// `cachestat` (before 6.5) counts as nothing cached: a data mover's snapshot is cold.
    /// A block device is read the same way.
    pub fn new(mut file: File) -> Self {
        let size = match file.metadata() {
            Ok(m) if m.is_file() => m.len(),
            // A device's length is where its end is.
            _ => {
                let end = file.seek(SeekFrom::End(0)).unwrap_or(0);
                let _ = file.rewind();
                end
            }
        };
        let cached = page_cache_of(&file)
            .map(|(pages, _)| pages * 4096)
            .unwrap_or(0);
        let ahead = (cached < size / 4)
            .then(|| ReadAhead::start(&file))
            .flatten();
        DirectReader {
            file,
            offset: 0,
            ahead,
        }
    }

    /// Whether reads still bypass the page cache.
    pub fn is_direct(&self) -> bool {
        self.ahead.is_some()
    }

    /// Goes on through the page cache from what the caller has had.
    fn fall_back(&mut self) -> io::Result<()> {
        self.ahead = None;
        set_direct(&self.file, false)?;
        self.file.seek(SeekFrom::Start(self.offset))?;
        Ok(())
    }
}

impl ReadAhead {
    /// None if the file system refuses `O_DIRECT` or no thread can be started.
    fn start(file: &File) -> Option<Self> {
        let clone = file.try_clone().ok()?;
        set_direct(file, true).ok()?;
        let (full_tx, full) = cb::bounded(AHEAD);
        let (empty, empty_rx) = cb::unbounded();
        let thread = std::thread::Builder::new()
            .name("ferry-read-ahead".into())
            .spawn(move || read_ahead(clone, full_tx, empty_rx));
        match thread {
            Ok(t) => Some(ReadAhead {
                full,
                empty,
                current: None,
                thread: Some(t),
            }),
            Err(_) => {
                let _ = set_direct(file, false);
                None
            }
        }
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        // Closing both channels ends the thread after the read it is in.
        let (_, closed) = cb::bounded(0);
        self.full = closed;
        let (closed, _) = cb::unbounded();
        self.empty = closed;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads the file piece by piece with positioned reads and sends the pieces in order; ends
/// at the end of the file (by closing the channel), at an error (after sending it), or when
/// the reader is dropped.
fn read_ahead(
    file: File,
    full: cb::Sender<io::Result<(PageAligned, usize)>>,
    empty: cb::Receiver<PageAligned>,
) {
    let mut offset = 0u64;
    let mut unallocated = AHEAD + 2;
    loop {
        let mut buf = match empty.try_recv() {
            Ok(b) => b,
            Err(_) if unallocated > 0 => {
                unallocated -= 1;
                PageAligned::zeroed(PIECE)
            }
            Err(_) => match empty.recv() {
                Ok(b) => b,
                Err(_) => return,
            },
        };
        let mut n = 0;
        let result = loop {
            match file.read_at(&mut buf[n..], offset + n as u64) {
                Ok(0) => break Ok(()),
                Ok(m) => {
                    n += m;
                    if n == buf.len() {
                        break Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // A short read mid-piece and then a refusal (an unaligned offset after the
                // file's last byte says EINVAL, not 0): send what was read first.
                Err(e) => break Err(e),
            }
        };
        offset += n as u64;
        if n > 0 && full.send(Ok((buf, n))).is_err() {
            return;
        }
        match result {
            Err(e) => {
                let _ = full.send(Err(e));
                return;
            }
            Ok(()) if n < PIECE => return,
            Ok(()) => {}
        }
    }
}

impl Read for DirectReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        if let Some(ahead) = &mut self.ahead {
            if ahead.current.is_none() {
                match ahead.full.recv() {
                    Ok(Ok((buf, len))) => ahead.current = Some((buf, len, 0)),
                    // The end of the file.
                    Err(_) => return Ok(0),
                    // The file system's alignment is stricter than a page, or the file ends
                    // unaligned: what is left is read through the page cache.
                    Ok(Err(e)) if e.raw_os_error() == Some(libc::EINVAL) => {
                        self.fall_back()?;
                        return self.read(out);
                    }
                    Ok(Err(e)) => return Err(e),
                }
            }
            let (buf, len, pos) = ahead.current.as_mut().expect("a piece");
            let n = out.len().min(*len - *pos);
            out[..n].copy_from_slice(&buf[*pos..*pos + n]);
            *pos += n;
            if *pos == *len {
                let (buf, _, _) = ahead.current.take().expect("a piece");
                let _ = ahead.empty.send(buf);
            }
            self.offset += n as u64;
            return Ok(n);
        }
        let n = self.file.read(out)?;
        self.offset += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;

    /// A file of `len` patterned bytes, written out and dropped from the page cache.
    fn cold_file(dir: &std::path::Path, len: usize) -> (std::path::PathBuf, Vec<u8>) {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 + i / 4093) as u8).collect();
        let path = dir.join("f");
        let mut f = File::create(&path).unwrap();
        f.write_all(&data).unwrap();
        f.sync_all().unwrap();
        // SAFETY: a valid descriptor; the advice only drops clean cached pages.
        unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        assert_eq!(
            page_cache_of(&f).unwrap().0,
            0,
            "the test file left the cache"
        );
        (path, data)
    }

    fn read_all(r: &mut DirectReader, chunk: usize) -> Vec<u8> {
        let mut buf = crate::sys::PageAligned::zeroed(chunk);
        let mut out = Vec::new();
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                return out;
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    #[test]
    fn a_cold_file_is_read_whole_without_filling_the_page_cache() {
        let dir = tempfile::tempdir().unwrap();
        // Not a multiple of the alignment: the last direct read is short.
        let (path, data) = cold_file(dir.path(), 3 * 1024 * 1024 + 1234);
        let mut r = DirectReader::new(File::open(&path).unwrap());
        assert!(r.is_direct());
        assert!(read_all(&mut r, 512 * 1024) == data, "bytes differ");
        let (cached, _) = page_cache_of(&File::open(&path).unwrap()).unwrap();
        assert!(
            cached < 16,
            "{cached} pages of the file came into the page cache"
        );
    }

    #[test]
    fn a_cached_file_is_read_through_the_page_cache() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data = vec![5u8; 1 << 20];
        std::fs::write(&path, &data).unwrap();
        let mut r = DirectReader::new(File::open(&path).unwrap());
        assert!(!r.is_direct());
        assert!(read_all(&mut r, 64 * 1024) == data);
    }

    #[test]
    fn reads_of_any_size_get_the_file_exactly_and_stop_at_its_end() {
        let dir = tempfile::tempdir().unwrap();
        // Pieces end inside the caller's reads; the file ends mid-page.
        let (path, data) = cold_file(dir.path(), 2 * PIECE + 777);
        let mut r = DirectReader::new(File::open(&path).unwrap());
        assert!(r.is_direct());
        let mut got = Vec::new();
        let mut buf = vec![0u8; 100_003];
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert!(
            got == data,
            "bytes differ ({} of {} read)",
            got.len(),
            data.len()
        );
        assert_eq!(r.read(&mut buf).unwrap(), 0, "still at the end");
        let (cached, _) = page_cache_of(&File::open(&path).unwrap()).unwrap();
        assert!(
            cached < 16,
            "{cached} pages of the file came into the page cache"
        );
    }

    #[test]
    fn a_reader_dropped_halfway_stops_its_thread() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = cold_file(dir.path(), 8 * PIECE);
        let mut r = DirectReader::new(File::open(&path).unwrap());
        let mut buf = vec![0u8; 4096];
        assert_eq!(r.read(&mut buf).unwrap(), 4096);
        // Drop joins the read-ahead thread: this returns only if the thread ended.
        drop(r);
    }
}
