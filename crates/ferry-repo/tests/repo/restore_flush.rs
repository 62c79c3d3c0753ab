//! A restore asked to flush leaves nothing of what it wrote in the page cache unwritten: the
//! kernel's own count of dirty pages (`cachestat`, Linux 6.5) says so for every restored file.

use crate::common;

use std::os::fd::AsRawFd;
use std::path::Path;

use common::*;
use ferry_repo::backup::{BackupOptions, BackupSource};
use ferry_repo::restore::RestoreOptions;

/// `struct cachestat_range` and `struct cachestat` of `<linux/mman.h>`.
#[repr(C)]
struct CachestatRange {
    off: u64,
    len: u64,
}

#[repr(C)]
#[derive(Debug, Default)]
struct Cachestat {
    nr_cache: u64,
    nr_dirty: u64,
    nr_writeback: u64,
    nr_evicted: u64,
    nr_recently_evicted: u64,
}

/// The page cache's view of a whole file: cached, dirty and under-writeback pages.
fn cachestat(path: &Path) -> Cachestat {
    const SYS_CACHESTAT: libc::c_long = 451;
    let file = std::fs::File::open(path).unwrap();
    let range = CachestatRange { off: 0, len: 0 };
    let mut stat = Cachestat::default();
    // SAFETY: both structs are #[repr(C)] as the kernel defines them and outlive the call.
    let rc = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            file.as_raw_fd() as libc::c_uint,
            &range as *const CachestatRange,
            &mut stat as *mut Cachestat,
            0 as libc::c_uint,
        )
    };
    assert_eq!(
        rc,
        0,
        "cachestat {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
    stat
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flushed_restore_leaves_no_dirty_page_and_says_how_long_it_took() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    for i in 0..6u64 {
        std::fs::write(src.join(format!("d/f{i}")), random_bytes(i, 3 << 20)).unwrap();
    }
    let repo = init_repo(&t.path().join("repo")).await;
    repo.backup(
        BackupSource::Contents(src.clone()),
        BackupOptions::default(),
        no_progress(),
    )
    .await
    .unwrap();

    let plain = t.path().join("plain");
    let summary = restore_latest(&repo, &plain).await.unwrap();
    assert_eq!(summary.flush_seconds, None, "no flush unless asked");

    let flushed = t.path().join("flushed");
    let summary = restore_latest_with(
        &repo,
        &flushed,
        RestoreOptions {
            flush: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let took = summary.flush_seconds.expect("the flush is reported");
    assert!(
        took >= 0.0 && took <= summary.seconds,
        "{took} of {}",
        summary.seconds
    );
    assert_same_tree(&src, &flushed);
    let mut cached = 0;
    for i in 0..6u64 {
        let stat = cachestat(&flushed.join(format!("d/f{i}")));
        assert_eq!(
            (stat.nr_dirty, stat.nr_writeback),
            (0, 0),
            "f{i} after a flushed restore: {stat:?}"
        );
        cached += stat.nr_cache;
    }
    // The restore wrote through the page cache, so the check looked at real pages.
    assert!(cached > 0, "no restored page was in the cache at all");
}
