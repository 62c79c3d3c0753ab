//! A repository in a local directory, laid out as restic lays it out.

use std::io::Write;
use std::ops::Range;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;

use super::{Backend, BackendError, FileType, Handle, RangeData};
use crate::sys::{DIRECT_ALIGN, PageAligned, set_direct};

#[derive(Debug, Clone)]
pub struct LocalBackend {
    root: PathBuf,
}

fn dir_of(kind: FileType) -> &'static str {
    match kind {
        FileType::Config => "",
        FileType::Key => "keys",
        FileType::Snapshot => "snapshots",
        FileType::Index => "index",
        FileType::Pack => "data",
        FileType::Lock => "locks",
    }
}

fn io_err(what: &Path, e: std::io::Error) -> BackendError {
    if e.kind() == std::io::ErrorKind::NotFound {
        BackendError::NotFound(what.display().to_string())
    } else {
        BackendError::Other {
            what: what.display().to_string(),
            message: e.to_string(),
        }
    }
}

/// An error writing a file: the kinds that mean "this location takes no writes" become
/// [`BackendError::ReadOnly`], so callers can suggest reading without a lock.
fn write_err(what: &Path, e: std::io::Error) -> BackendError {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ReadOnlyFilesystem | K::PermissionDenied | K::StorageFull | K::QuotaExceeded => {
            BackendError::ReadOnly {
                what: what.display().to_string(),
                message: e.to_string(),
            }
        }
        _ => io_err(what, e),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BackendError> + Send + 'static,
) -> Result<T, BackendError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BackendError::Other {
            what: "local backend".into(),
            message: e.to_string(),
        })?
}

impl LocalBackend {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, h: &Handle) -> PathBuf {
        self.root.join(h.relative_path())
    }
}

#[async_trait]
impl Backend for LocalBackend {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    async fn create(&self) -> Result<(), BackendError> {
        let root = self.root.clone();
        blocking(move || {
            for d in ["keys", "snapshots", "index", "locks"] {
                let p = root.join(d);
                std::fs::create_dir_all(&p).map_err(|e| io_err(&p, e))?;
            }
            for i in 0..=255u8 {
                let p = root.join("data").join(hex::encode([i]));
                std::fs::create_dir_all(&p).map_err(|e| io_err(&p, e))?;
            }
            Ok(())
        })
        .await
    }

    async fn save(&self, handle: &Handle, data: Bytes) -> Result<(), BackendError> {
        let path = self.path(handle);
        let overwrite = handle.kind == FileType::Lock;
        blocking(move || {
            let dir = path.parent().expect("has parent").to_path_buf();
            if !overwrite && path.exists() {
                return Err(BackendError::Other {
                    what: path.display().to_string(),
                    message: "file already exists".into(),
                });
            }
            std::fs::create_dir_all(&dir).map_err(|e| write_err(&dir, e))?;
            // Write to a temporary name and rename: readers never see a partial file.
            let tmp = write_temporary(&path, &data)?;
            if let Err(e) = std::fs::rename(&tmp, &path) {
                let _ = std::fs::remove_file(&tmp);
                return Err(write_err(&path, e));
            }
            Ok(())
        })
        .await
    }

    /// The complete file is written under a temporary name, then hard-linked to its name:
    /// `link(2)` fails with EEXIST if the name exists, atomically (on NFS too, where it is
    /// the classic lock-file primitive), and never replaces anything. On a file system
    /// without hard links (vfat, some FUSE mounts) the file is created with `O_EXCL` at its
    /// name instead: still exactly one creator, but a reader may see it before it is
    /// complete.
    async fn save_new(&self, handle: &Handle, data: Bytes) -> Result<bool, BackendError> {
        let path = self.path(handle);
        blocking(move || {
            let dir = path.parent().expect("has parent").to_path_buf();
            std::fs::create_dir_all(&dir).map_err(|e| write_err(&dir, e))?;
            let tmp = write_temporary(&path, &data)?;
            let linked = std::fs::hard_link(&tmp, &path);
            let _ = std::fs::remove_file(&tmp);
            match linked {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
                Err(e) if links_unsupported(&e) => {
                    tracing::debug!(path = %path.display(), error = %e, "no hard links here: creating with O_EXCL");
                    create_exclusive(&path, &data)
                }
                Err(e) => Err(write_err(&path, e)),
            }
        })
        .await
    }

    async fn load(
        &self,
        handle: &Handle,
        range: Option<Range<u64>>,
    ) -> Result<Bytes, BackendError> {
        let path = self.path(handle);
        blocking(move || {
            let mut f = std::fs::File::open(&path).map_err(|e| io_err(&path, e))?;
            let range = match range {
                None => 0..f.metadata().map_err(|e| io_err(&path, e))?.len(),
                Some(r) => r,
            };
            let mut buf = Vec::new();
            read_range(&mut f, &path, range, &mut buf)?;
            Ok(Bytes::from(buf))
        })
        .await
    }

    async fn load_into(
        &self,
        handle: &Handle,
        range: Range<u64>,
        mut buf: Vec<u8>,
    ) -> Result<Vec<u8>, BackendError> {
        let path = self.path(handle);
        blocking(move || {
            let mut f = std::fs::File::open(&path).map_err(|e| io_err(&path, e))?;
            read_range(&mut f, &path, range, &mut buf)?;
            Ok(buf)
        })
        .await
    }

    async fn load_range(
        &self,
        handle: &Handle,
        range: Range<u64>,
        _buf: Vec<u8>,
    ) -> Result<RangeData, BackendError> {
        let path = self.path(handle);
        blocking(move || {
            let f = std::fs::File::open(&path).map_err(|e| io_err(&path, e))?;
            let size = f.metadata().map_err(|e| io_err(&path, e))?.len();
            // Touching a mapping past the end of the file would kill the process (SIGBUS):
            // a range the file does not hold is an error here, as a short read would be.
            if range.end > size || range.start > range.end {
                return Err(BackendError::Other {
                    what: path.display().to_string(),
                    message: format!(
                        "short read: the file holds {size} bytes, {}..{} was asked for",
                        range.start, range.end
                    ),
                });
            }
            let len = (range.end - range.start) as usize;
            if len == 0 {
                return Ok(RangeData::Buffer(Vec::new()));
            }
            // Populated: the pages are read in (and mapped) here, on the I/O thread, so the
            // workers that decrypt never wait for the disk or take page faults.
            // SAFETY: pack files are immutable once written (never truncated or rewritten,
            // by ferry or restic); the mapping is read-only and lives no longer than this
            // range's processing.
            let map = unsafe {
                memmap2::MmapOptions::new()
                    .offset(range.start)
                    .len(len)
                    .populate()
                    .map(&f)
            }
            .map_err(|e| io_err(&path, e))?;
            Ok(RangeData::Mapped(map))
        })
        .await
    }

    async fn stat(&self, handle: &Handle) -> Result<u64, BackendError> {
        let path = self.path(handle);
        blocking(move || {
            Ok(std::fs::metadata(&path)
                .map_err(|e| io_err(&path, e))?
                .len())
        })
        .await
    }

    async fn remove(&self, handle: &Handle) -> Result<(), BackendError> {
        let path = self.path(handle);
        blocking(move || match std::fs::remove_file(&path) {
            // Gone already counts as removed, as on S3: two processes clearing the same stale
            // lock, or two forgets of one snapshot, both end with the file gone.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other.map_err(|e| io_err(&path, e)),
        })
        .await
    }

    async fn list(&self, kind: FileType) -> Result<Vec<(String, u64)>, BackendError> {
        let dir = self.root.join(dir_of(kind));
        blocking(move || {
            let mut out = Vec::new();
            let mut dirs = vec![dir.clone()];
            if kind == FileType::Pack {
                dirs.clear();
                match std::fs::read_dir(&dir) {
                    Ok(rd) => {
                        for e in rd {
                            let e = e.map_err(|e| io_err(&dir, e))?;
                            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                                dirs.push(e.path());
                            }
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
                    Err(e) => return Err(io_err(&dir, e)),
                }
            }
            for d in dirs {
                let rd = match std::fs::read_dir(&d) {
                    Ok(rd) => rd,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_err(&d, e)),
                };
                for e in rd {
                    let e = e.map_err(|e| io_err(&d, e))?;
                    let name = e.file_name().to_string_lossy().into_owned();
                    if name.starts_with('.') {
                        continue;
                    }
                    let md = match e.metadata() {
                        Ok(md) => md,
                        // Removed since the directory was read (a lock let go): not there.
                        Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(err) => return Err(io_err(&e.path(), err)),
                    };
                    if md.is_file() {
                        out.push((name, md.len()));
                    }
                }
            }
            Ok(out)
        })
        .await
    }
}

/// Writes `data` to a new temporary file next to `path` (hidden: listings skip names that
/// start with `.`), synced and read-only; returns its path. Nothing is left behind on error.
fn write_temporary(path: &Path, data: &[u8]) -> Result<PathBuf, BackendError> {
    let dir = path.parent().expect("has parent");
    let tmp = dir.join(format!(
        ".{}-tmp-{}",
        path.file_name().unwrap().to_string_lossy(),
        hex::encode(rand::random::<[u8; 8]>())
    ));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        write_maybe_direct(&mut f, data)?;
        f.sync_data()?;
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o400))
    })();
    match result {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(write_err(path, e))
        }
    }
}

/// Files at least this big (packs) are written with `O_DIRECT`.
const DIRECT_MIN: usize = 1 << 20;
/// How much is copied into the aligned buffer and written at a time.
const DIRECT_PIECE: usize = 4 << 20;

thread_local! {
    /// Room for one aligned piece, kept per thread.
    static DIRECT_BUFFER: std::cell::RefCell<Option<PageAligned>> = const { std::cell::RefCell::new(None) };
}

/// Writes `data` to the new, empty file `f`. A big file's page-aligned bulk bypasses the
/// page cache (`O_DIRECT`): a backup writes its packs once and does not read them back,
/// and copying them into freshly allocated cache pages cost more CPU than anything else
/// the backup does (on the 2-core VM: 3 s of system time per GiB buffered, 0.1 s direct).
/// The tail, and everything on file systems without `O_DIRECT`, is written normally. The
/// caller's `sync_data` makes either durable.
fn write_maybe_direct(f: &mut std::fs::File, data: &[u8]) -> std::io::Result<()> {
    let bulk = data.len() / DIRECT_ALIGN * DIRECT_ALIGN;
    let mut done = 0;
    if data.len() >= DIRECT_MIN && set_direct(f, true).is_ok() {
        let result = DIRECT_BUFFER.with(|b| {
            let mut b = b.borrow_mut();
            let aligned = b.get_or_insert_with(|| PageAligned::zeroed(DIRECT_PIECE));
            while done < bulk {
                let n = (bulk - done).min(DIRECT_PIECE);
                aligned[..n].copy_from_slice(&data[done..done + n]);
                let mut written = 0;
                while written < n {
                    match f.write(&aligned[written..n]) {
                        Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                        Ok(w) => written += w,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            done += written;
                            return Err(e);
                        }
                    }
                    if written % DIRECT_ALIGN != 0 {
                        // A short write left the offset unaligned: go on buffered.
                        done += written;
                        return Ok(());
                    }
                }
                done += n;
            }
            Ok(())
        });
        // Back to buffered writes for the unaligned tail (or after a refusal).
        set_direct(f, false)?;
        if let Err(e) = result
            && e.raw_os_error() != Some(libc::EINVAL)
        {
            return Err(e);
        }
    }
    f.write_all(&data[done..])
}

/// Whether `link(2)` failed because the file system has no hard links (Linux says EPERM
/// for that, e.g. on vfat; others ENOTSUP or ENOSYS).
fn links_unsupported(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::Unsupported
        || matches!(
            e.raw_os_error(),
            Some(libc::EPERM) | Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS)
        )
}

/// [`Backend::save_new`] where hard links are missing: `O_CREAT | O_EXCL` decides who
/// creates `path`; a failed write removes the file again.
fn create_exclusive(path: &Path, data: &[u8]) -> Result<bool, BackendError> {
    let mut f = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(write_err(path, e)),
    };
    let written = (|| {
        f.write_all(data)?;
        f.sync_data()?;
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o400))
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(path);
        return Err(write_err(path, e));
    }
    Ok(true)
}

/// Reads `range` of the open file `f` into `buf` (cleared first; read into spare capacity,
/// so nothing is zero-filled only to be overwritten). A file shorter than the range is an
/// error.
fn read_range(
    f: &mut std::fs::File,
    path: &Path,
    range: Range<u64>,
    buf: &mut Vec<u8>,
) -> Result<(), BackendError> {
    use std::io::{Read, Seek, SeekFrom};
    let len = range.end.saturating_sub(range.start);
    buf.clear();
    buf.reserve(len as usize);
    f.seek(SeekFrom::Start(range.start))
        .map_err(|e| io_err(path, e))?;
    f.take(len).read_to_end(buf).map_err(|e| io_err(path, e))?;
    if buf.len() as u64 != len {
        return Err(BackendError::Other {
            what: path.display().to_string(),
            message: format!(
                "short read: {} of {len} bytes at {}",
                buf.len(),
                range.start
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn removing_a_file_already_gone_succeeds_as_on_s3() {
        let t = tempfile::tempdir().unwrap();
        let backend = LocalBackend::new(t.path());
        let handle = Handle::new(FileType::Lock, "ab".repeat(32));
        assert!(
            backend
                .save_new(&handle, Bytes::from_static(b"{}"))
                .await
                .unwrap()
        );
        backend.remove(&handle).await.unwrap();
        assert!(matches!(
            backend.stat(&handle).await,
            Err(BackendError::NotFound(_))
        ));
        backend.remove(&handle).await.unwrap();
    }

    /// Locks come and go while others list them: a file removed between the directory's read
    /// and its `stat` is simply not listed (it failed the whole listing, and with it a backup
    /// racing another's lock removal).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn listing_while_files_are_removed_never_fails() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("repo");
        let backend = LocalBackend::new(&root);
        let locks = root.join("locks");
        std::fs::create_dir_all(&locks).unwrap();
        for round in 0..100 {
            let names: Vec<String> = (0..200).map(|i| format!("{round:04}{i:060x}")).collect();
            for n in &names {
                std::fs::write(locks.join(n), b"lock").unwrap();
            }
            let remover = {
                let locks = locks.clone();
                std::thread::spawn(move || {
                    for n in names.iter().rev() {
                        std::fs::remove_file(locks.join(n)).unwrap();
                    }
                })
            };
            while !remover.is_finished() {
                let listed = backend.list(FileType::Lock).await;
                assert!(listed.is_ok(), "round {round}: {listed:?}");
            }
            remover.join().unwrap();
        }
        assert!(backend.list(FileType::Lock).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn big_files_written_direct_read_back_exactly() {
        let t = tempfile::tempdir().unwrap();
        let backend = LocalBackend::new(t.path().join("repo"));
        for len in [
            DIRECT_MIN,
            DIRECT_MIN + 1,
            2 * DIRECT_PIECE + 3 * DIRECT_ALIGN + 123,
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let h = Handle::new(FileType::Pack, format!("{len:064x}"));
            backend.save(&h, Bytes::from(data.clone())).await.unwrap();
            assert_eq!(backend.load(&h, None).await.unwrap(), data, "length {len}");
        }
    }

    #[tokio::test]
    async fn save_new_creates_once_and_never_replaces() {
        let t = tempfile::tempdir().unwrap();
        let backend = LocalBackend::new(t.path().join("repo"));
        let config = Handle::config();
        assert!(
            backend
                .save_new(&config, Bytes::from_static(b"first"))
                .await
                .unwrap()
        );
        assert!(
            !backend
                .save_new(&config, Bytes::from_static(b"second"))
                .await
                .unwrap()
        );
        assert_eq!(backend.load(&config, None).await.unwrap(), "first");
        // No temporary file is left behind by either call.
        let names: Vec<_> = std::fs::read_dir(t.path().join("repo"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["config"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_save_new_has_exactly_one_winner() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("repo");
        for round in 0..20 {
            let h = Handle::new(FileType::Lock, format!("{round}"));
            let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(8));
            let tasks: Vec<_> = (0..8u8)
                .map(|i| {
                    let (backend, h, barrier) =
                        (LocalBackend::new(&root), h.clone(), barrier.clone());
                    tokio::spawn(async move {
                        barrier.wait().await;
                        let created = backend.save_new(&h, Bytes::from(vec![i; 64])).await;
                        (i, created.unwrap())
                    })
                })
                .collect();
            let mut winners = Vec::new();
            for task in tasks {
                let (i, created) = task.await.unwrap();
                if created {
                    winners.push(i);
                }
            }
            assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
            let stored = LocalBackend::new(&root).load(&h, None).await.unwrap();
            assert_eq!(
                stored,
                vec![winners[0]; 64],
                "the winner's bytes are the file"
            );
        }
    }
}
