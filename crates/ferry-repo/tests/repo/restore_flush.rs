//! A restore asked to flush leaves nothing of what it wrote in the page cache unwritten: the
//! kernel's own count of dirty pages (`cachestat`, Linux 6.5) says so for every restored file.
//! Such a restore writes large files past the page cache (`O_DIRECT`), which the same count
//! shows too.

use crate::common;

use std::path::Path;

use common::*;
use ferry_repo::Repository;
use ferry_repo::backup::{BackupOptions, BackupSource};
use ferry_repo::restore::{DirectWrites, RestoreOptions};

/// A restored file's (cached, unwritten) pages.
fn page_cache(path: &Path) -> (u64, u64) {
    let file = std::fs::File::open(path).unwrap();
    ferry_repo::sys::page_cache_of(&file)
        .unwrap_or_else(|e| panic!("cachestat {}: {e}", path.display()))
}

/// A new repository at `dir` holding one backup of `src`.
async fn backed_up(src: &Path, dir: &Path) -> Repository {
    let repo = init_repo(dir).await;
    repo.backup(
        BackupSource::Contents(src.to_path_buf()),
        BackupOptions::default(),
        no_progress(),
    )
    .await
    .unwrap();
    repo
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flushed_restore_leaves_no_dirty_page_and_says_how_long_it_took() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    for i in 0..6u64 {
        std::fs::write(src.join(format!("d/f{i}")), random_bytes(i, 3 << 20)).unwrap();
    }
    let repo = backed_up(&src, &t.path().join("repo")).await;

    let plain = t.path().join("plain");
    let summary = restore_latest(&repo, &plain).await.unwrap();
    assert_eq!(summary.flush_seconds, None, "no flush unless asked");

    let flushed = t.path().join("flushed");
    let summary = restore_latest_with(
        &repo,
        &flushed,
        RestoreOptions {
            flush: true,
            // Through the page cache, so that the flush has dirty pages to write.
            direct_writes: DirectWrites::Never,
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
        let (in_cache, unwritten) = page_cache(&flushed.join(format!("d/f{i}")));
        assert_eq!(
            unwritten, 0,
            "f{i}: pages dirty or under writeback after a flushed restore"
        );
        cached += in_cache;
    }
    // The restore wrote through the page cache, so the check looked at real pages.
    assert!(cached > 0, "no restored page was in the cache at all");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flushed_restore_writes_large_files_past_the_page_cache() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    // Blob boundaries fall anywhere within a page, and so does the end of the second file.
    std::fs::write(src.join("big"), random_bytes(1, 12 << 20)).unwrap();
    std::fs::write(src.join("odd"), random_bytes(2, (5 << 20) + 1234)).unwrap();
    std::fs::write(src.join("small"), random_bytes(3, 10_000)).unwrap();
    let repo = backed_up(&src, &t.path().join("repo")).await;

    // Pages in the cache (and of those unwritten) per large file, restored with `direct`.
    let restore = |name: &str, direct_writes: DirectWrites| {
        let dir = t.path().join(name);
        let repo = &repo;
        let src = &src;
        async move {
            restore_latest_with(
                repo,
                &dir,
                RestoreOptions {
                    flush: true,
                    direct_writes,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
            // Counted before the comparison reads the files into the cache.
            let pages = ["big", "odd"].map(|f| page_cache(&dir.join(f)));
            assert_same_tree(src, &dir);
            pages
        }
    };
    let pages = |bytes: u64| bytes.div_ceil(4096);

    let direct = restore("direct", DirectWrites::Auto).await;
    for ((cached, unwritten), len) in direct.into_iter().zip([12u64 << 20, (5 << 20) + 1234]) {
        assert_eq!(unwritten, 0, "dirty pages after a flushed restore");
        // Only the pages a blob boundary (or the file's end) cuts, two per blob at most
        // (blobs are at least 512 KiB), and the file's last blob, which may be shorter than
        // that and then is not worth a direct write (128 pages at most). The chunker's
        // polynomial is the repository's own, so the boundaries differ from run to run.
        assert!(
            cached <= 2 * len.div_ceil(512 << 10) + 128,
            "{cached} of {} pages in the page cache after direct writes",
            pages(len)
        );
    }
    let cached = restore("cached", DirectWrites::Never).await;
    for ((cached, _), len) in cached.into_iter().zip([12u64 << 20, (5 << 20) + 1234]) {
        assert!(
            cached * 10 >= pages(len) * 9,
            "through the page cache: only {cached} of {} pages cached",
            pages(len)
        );
    }
}
