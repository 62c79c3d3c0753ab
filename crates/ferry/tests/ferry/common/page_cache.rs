//! Whether a restored file is on stable storage: a restore's data mover flushes what it wrote
//! before it reports the data back, so a restored file checked moments later has no page
//! left dirty or under writeback (the kernel's `cachestat`, through ferry-repo).

use std::path::Path;

/// Pages of `path` in the page cache not yet on stable storage.
pub fn unwritten_pages(path: &Path) -> u64 {
    let file = std::fs::File::open(path).unwrap();
    ferry_repo::sys::page_cache_of(&file)
        .unwrap_or_else(|e| panic!("cachestat {}: {e}", path.display()))
        .1
}
