//! The kernel's count of a file's dirty pages (`cachestat`, Linux 6.5): a restore's data
//! mover flushes what it wrote before it reports the data back, so a restored file checked
//! moments later has none.

use std::os::fd::AsRawFd;
use std::path::Path;

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

/// Pages of `path` in the page cache not yet on stable storage (dirty or being written).
pub fn unwritten_pages(path: &Path) -> u64 {
    const SYS_CACHESTAT: libc::c_long = 451;
    let file = std::fs::File::open(path).unwrap();
    let range = CachestatRange { off: 0, len: 0 };
    let mut stat = Cachestat::default();
    // SAFETY: both structs are #[repr(C)] as <linux/mman.h> defines them and outlive the call.
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
    stat.nr_dirty + stat.nr_writeback
}
