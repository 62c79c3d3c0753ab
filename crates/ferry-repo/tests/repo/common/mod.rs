//! Shared helpers for the repository tests: data shapes, tree comparison, restic runner.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use ferry_repo::Repository;
use ferry_repo::backend::local::LocalBackend;
use ferry_repo::backend::{Backend, BackendError, FileType, Handle};
use ferry_repo::restore::RestoreProgress;

pub const PASSWORD: &str = "correct horse battery staple";

/// Deterministic pseudo-random bytes (xorshift), so tests need no RNG state.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn set_mtime(path: &Path, secs: i64, nanos: i64) {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let ts = [
        libc::timespec {
            tv_sec: secs,
            tv_nsec: nanos,
        },
        libc::timespec {
            tv_sec: secs,
            tv_nsec: nanos,
        },
    ];
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(rc, 0, "utimensat {}", path.display());
}

/// Builds a tree with every shape the format must carry: many small files, a large random
/// file, a compressible file, a sparse file, empty and nested dirs, unicode, non-UTF-8 and
/// 255-byte names, symlinks (relative, dangling, non-UTF-8 target), hard links, odd modes.
pub fn make_tree(root: &Path) {
    make_tree_with(root, false)
}

/// `non_utf8_link_target`: restic 0.14 cannot store such targets (it gained them in 0.17).
pub fn make_tree_with(root: &Path, non_utf8_link_target: bool) {
    std::fs::create_dir_all(root.join("small/nested/deeper")).unwrap();
    std::fs::create_dir_all(root.join("empty-dir")).unwrap();
    for i in 0..150u64 {
        let len = (i * 37 % 4096) as usize;
        let sub = if i % 3 == 0 { "small/nested" } else { "small" };
        std::fs::write(
            root.join(sub).join(format!("f{i:03}.bin")),
            random_bytes(i, len),
        )
        .unwrap();
    }
    std::fs::write(root.join("small/nested/deeper/dup-a"), b"same content").unwrap();
    std::fs::write(root.join("small/nested/deeper/dup-b"), b"same content").unwrap();
    std::fs::write(root.join("large.bin"), random_bytes(7, 5 << 20)).unwrap();
    let text: Vec<u8> = (0..60_000)
        .flat_map(|i| format!("line {i} of a very compressible text file\n").into_bytes())
        .collect();
    std::fs::write(root.join("text.txt"), text).unwrap();
    let sparse = std::fs::File::create(root.join("sparse.img")).unwrap();
    sparse.set_len(6 << 20).unwrap();
    use std::os::unix::fs::FileExt;
    sparse.write_all_at(b"middle", 3 << 20).unwrap();
    sparse.write_all_at(b"end", (6 << 20) - 3).unwrap();
    std::fs::write(root.join("empty-file"), b"").unwrap();
    std::fs::write(root.join("ünïcødé-名前.txt"), "unicode".as_bytes()).unwrap();
    std::fs::write(
        root.join(OsStr::from_bytes(b"bad-\xff\xfe-name")),
        b"latin1",
    )
    .unwrap();
    std::fs::write(root.join("n".repeat(255)), b"long name").unwrap();
    std::os::unix::fs::symlink("text.txt", root.join("link-to-text")).unwrap();
    std::os::unix::fs::symlink("does/not/exist", root.join("dangling")).unwrap();
    if non_utf8_link_target {
        std::os::unix::fs::symlink(
            OsStr::from_bytes(b"target-\xff"),
            root.join("link-non-utf8"),
        )
        .unwrap();
    }
    std::fs::write(root.join("hard-a"), b"hard linked content").unwrap();
    std::fs::hard_link(root.join("hard-a"), root.join("small/hard-b")).unwrap();
    std::fs::write(root.join("script.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(
        root.join("script.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::set_permissions(root.join("hard-a"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(
        root.join("small/nested/deeper"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    // Distinct times with nanoseconds, children before parents.
    let mut all = Vec::new();
    walk(root, &mut all);
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for (i, p) in all.iter().enumerate() {
        set_mtime(p, 1_600_000_000 + i as i64 * 1000, 123_456_789);
    }
}

pub fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        out.push(p.clone());
        if std::fs::symlink_metadata(&p).unwrap().is_dir() {
            walk(&p, out);
        }
    }
}

/// Asserts two trees are identical: entry set, types, content, permissions, mtimes (ns),
/// symlink targets, and hard-link groups.
pub fn assert_same_tree(a: &Path, b: &Path) {
    let mut ea = Vec::new();
    walk(a, &mut ea);
    let mut eb = Vec::new();
    walk(b, &mut eb);
    let mut ra: Vec<PathBuf> = ea
        .iter()
        .map(|p| p.strip_prefix(a).unwrap().to_path_buf())
        .collect();
    let mut rb: Vec<PathBuf> = eb
        .iter()
        .map(|p| p.strip_prefix(b).unwrap().to_path_buf())
        .collect();
    ra.sort();
    rb.sort();
    assert_eq!(
        ra,
        rb,
        "entry sets differ between {} and {}",
        a.display(),
        b.display()
    );
    let mut inodes_a = std::collections::HashMap::new();
    let mut inodes_b = std::collections::HashMap::new();
    for rel in &ra {
        let pa = a.join(rel);
        let pb = b.join(rel);
        let ma = std::fs::symlink_metadata(&pa).unwrap();
        let mb = std::fs::symlink_metadata(&pb).unwrap();
        assert_eq!(ma.file_type(), mb.file_type(), "type of {}", rel.display());
        assert_eq!(ma.mode(), mb.mode(), "mode of {}", rel.display());
        if !ma.is_dir() {
            assert_eq!(
                (ma.mtime(), ma.mtime_nsec()),
                (mb.mtime(), mb.mtime_nsec()),
                "mtime of {}",
                rel.display()
            );
        } else {
            assert_eq!(ma.mtime(), mb.mtime(), "mtime of dir {}", rel.display());
        }
        if ma.file_type().is_symlink() {
            assert_eq!(
                std::fs::read_link(&pa).unwrap(),
                std::fs::read_link(&pb).unwrap(),
                "target of {}",
                rel.display()
            );
        } else if ma.is_file() {
            assert_eq!(ma.len(), mb.len(), "size of {}", rel.display());
            assert!(
                std::fs::read(&pa).unwrap() == std::fs::read(&pb).unwrap(),
                "content of {}",
                rel.display()
            );
            if ma.nlink() > 1 {
                inodes_a
                    .entry(ma.ino())
                    .or_insert_with(Vec::new)
                    .push(rel.clone());
                inodes_b
                    .entry(mb.ino())
                    .or_insert_with(Vec::new)
                    .push(rel.clone());
            }
        }
    }
    let mut ga: Vec<Vec<PathBuf>> = inodes_a.into_values().collect();
    let mut gb: Vec<Vec<PathBuf>> = inodes_b.into_values().collect();
    ga.iter_mut().for_each(|g| g.sort());
    gb.iter_mut().for_each(|g| g.sort());
    ga.sort();
    gb.sort();
    assert_eq!(ga, gb, "hard link groups differ");
}

pub fn restic(cwd: &Path, args: &[&str]) -> Output {
    let cache = cwd.join(".restic-cache");
    Command::new("restic")
        .args(args)
        .current_dir(cwd)
        .env("RESTIC_PASSWORD", PASSWORD)
        .env("RESTIC_CACHE_DIR", &cache)
        .env_remove("RESTIC_REPOSITORY")
        .output()
        .expect("run restic (apt-get install restic)")
}

pub fn restic_ok(cwd: &Path, args: &[&str]) -> String {
    let out = restic(cwd, args);
    assert!(
        out.status.success(),
        "restic {:?} failed: {}\n{}",
        args,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Where ferry's backup of the absolute path `src` lies below a restore target `root`: a
/// backup keeps the whole path, as restic's does.
pub fn in_snapshot(root: &Path, src: &Path) -> PathBuf {
    root.join(src.strip_prefix("/").expect("an absolute path"))
}

pub async fn open_repo(dir: &Path) -> Repository {
    Repository::open(Arc::new(LocalBackend::new(dir)), PASSWORD)
        .await
        .unwrap()
}

/// scrypt parameters for the many repositories the tests create: cheap, not calibrated
/// (the key tests make calibrated ones).
pub const TEST_KDF: ferry_repo::kdf::KdfParams = ferry_repo::kdf::KdfParams {
    n: 1 << 14,
    r: 8,
    p: 1,
};

pub async fn init_repo(dir: &Path) -> Repository {
    Repository::init_with_kdf(Arc::new(LocalBackend::new(dir)), PASSWORD, Some(TEST_KDF))
        .await
        .unwrap()
}

pub fn no_progress() -> Arc<dyn Fn(&RestoreProgress) + Send + Sync> {
    Arc::new(|_| {})
}

/// Restores the latest snapshot into directory `path` with default options, quietly.
pub async fn restore_latest(
    repo: &Repository,
    path: &Path,
) -> ferry_repo::Result<ferry_repo::RestoreSummary> {
    restore_latest_with(repo, path, ferry_repo::RestoreOptions::default()).await
}

/// [`restore_latest`] with the options given.
pub async fn restore_latest_with(
    repo: &Repository,
    path: &Path,
    opts: ferry_repo::RestoreOptions,
) -> ferry_repo::Result<ferry_repo::RestoreSummary> {
    let snap = repo.find_snapshot("latest").await?;
    repo.restore(
        &snap,
        ferry_repo::RestoreTarget::Directory {
            path: path.to_path_buf(),
            subpath: None,
        },
        opts,
        no_progress(),
    )
    .await
}

/// Allocated bytes of a file (to see holes).
pub fn allocated(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().blocks() * 512
}

/// What a test changes about a local backend ([`HookedBackend`]): a step before each read,
/// and an answer to `stat` in place of the file system's.
#[async_trait::async_trait]
pub trait BackendHooks: Send + Sync + std::fmt::Debug {
    async fn before_load(&self, _handle: &Handle, _range: Option<&std::ops::Range<u64>>) {}
    fn stat(&self, _handle: &Handle) -> Option<Result<u64, BackendError>> {
        None
    }
}

/// A local backend whose reads pass through `hooks`; everything else is the local one's.
#[derive(Debug)]
pub struct HookedBackend<H> {
    pub inner: LocalBackend,
    pub hooks: H,
}

impl<H> HookedBackend<H> {
    pub fn new(dir: &Path, hooks: H) -> Self {
        Self {
            inner: LocalBackend::new(dir),
            hooks,
        }
    }
}

#[async_trait::async_trait]
impl<H: BackendHooks> Backend for HookedBackend<H> {
    fn location(&self) -> String {
        self.inner.location()
    }
    async fn save(&self, h: &Handle, data: bytes::Bytes) -> Result<(), BackendError> {
        self.inner.save(h, data).await
    }
    async fn save_new(&self, h: &Handle, data: bytes::Bytes) -> Result<bool, BackendError> {
        self.inner.save_new(h, data).await
    }
    async fn load(
        &self,
        h: &Handle,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<bytes::Bytes, BackendError> {
        self.hooks.before_load(h, range.as_ref()).await;
        self.inner.load(h, range).await
    }
    async fn stat(&self, h: &Handle) -> Result<u64, BackendError> {
        match self.hooks.stat(h) {
            Some(answer) => answer,
            None => self.inner.stat(h).await,
        }
    }
    async fn remove(&self, h: &Handle) -> Result<(), BackendError> {
        self.inner.remove(h).await
    }
    async fn list(&self, kind: FileType) -> Result<Vec<(String, u64)>, BackendError> {
        self.inner.list(kind).await
    }
}
