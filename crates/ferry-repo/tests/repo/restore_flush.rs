//! A restore asked to flush leaves nothing of what it wrote in the page cache unwritten: the
//! kernel's own count of dirty pages (`cachestat`, Linux 6.5) says so for every restored file.

use crate::common;

use std::path::Path;

use common::*;
use ferry_repo::backup::{BackupOptions, BackupSource};
use ferry_repo::restore::RestoreOptions;

/// A restored file's (cached, unwritten) pages.
fn page_cache(path: &Path) -> (u64, u64) {
    let file = std::fs::File::open(path).unwrap();
    ferry_repo::sys::page_cache_of(&file)
        .unwrap_or_else(|e| panic!("cachestat {}: {e}", path.display()))
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
