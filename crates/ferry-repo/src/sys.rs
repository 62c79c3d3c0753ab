//! Small facts about the running system: host name, user, ids.

use std::ffi::CStr;

pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is valid for its length; gethostname NUL-terminates on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

pub fn uid() -> u32 {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() }
}

pub fn gid() -> u32 {
    // SAFETY: getgid has no preconditions.
    unsafe { libc::getgid() }
}

pub fn pid() -> u32 {
    std::process::id()
}

pub fn username() -> String {
    user_name(uid()).unwrap_or_else(|| std::env::var("USER").unwrap_or_default())
}

/// The name of a user id from the passwd database.
pub fn user_name(uid: u32) -> Option<String> {
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0u8; 4096];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the given sizes.
    let rc = unsafe {
        libc::getpwuid_r(
            uid,
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return None;
    }
    // SAFETY: pw_name points into buf and is NUL-terminated.
    Some(
        unsafe { CStr::from_ptr(pwd.pw_name) }
            .to_string_lossy()
            .into_owned(),
    )
}

/// The name of a group id from the group database.
pub fn group_name(gid: u32) -> Option<String> {
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut buf = vec![0u8; 4096];
    let mut result: *mut libc::group = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the given sizes.
    let rc = unsafe {
        libc::getgrgid_r(
            gid,
            &mut grp,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return None;
    }
    // SAFETY: gr_name points into buf and is NUL-terminated.
    Some(
        unsafe { CStr::from_ptr(grp.gr_name) }
            .to_string_lossy()
            .into_owned(),
    )
}

/// Whether a process with this pid exists on this host.
pub fn process_exists(pid: u32) -> bool {
    // SAFETY: kill with signal 0 only checks for existence/permission.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// `struct cachestat_range` and `struct cachestat` of `<linux/mman.h>`.
#[repr(C)]
struct CachestatRange {
    off: u64,
    len: u64,
}

#[repr(C)]
#[derive(Default)]
struct Cachestat {
    nr_cache: u64,
    nr_dirty: u64,
    nr_writeback: u64,
    nr_evicted: u64,
    nr_recently_evicted: u64,
}

/// A file's pages in the page cache, and of those the ones not yet on stable storage (dirty
/// or being written), from the kernel's `cachestat` (Linux 6.5): what a flushed restore must
/// leave at zero, as its tests check.
pub fn page_cache_of(file: &std::fs::File) -> std::io::Result<(u64, u64)> {
    use std::os::fd::AsRawFd;
    const SYS_CACHESTAT: libc::c_long = 451;
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
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((stat.nr_cache, stat.nr_dirty + stat.nr_writeback))
}

/// The alignment `O_DIRECT` wants of memory, file offsets and lengths: a page satisfies every
/// logical block size in use (512 and 4096 bytes).
pub const DIRECT_ALIGN: usize = 4096;

/// Turns `O_DIRECT` on or off for an open file (it is a file status flag: `fcntl` changes
/// it on the open file, for reads and writes from then on).
pub fn set_direct(file: &std::fs::File, on: bool) -> std::io::Result<()> {
    use rustix::fs::{OFlags, fcntl_getfl, fcntl_setfl};
    let flags = fcntl_getfl(file)?;
    let flags = if on {
        flags | OFlags::DIRECT
    } else {
        flags - OFlags::DIRECT
    };
    Ok(fcntl_setfl(file, flags)?)
}

/// A zeroed buffer whose first byte is page-aligned, as `O_DIRECT` reads and writes want it.
/// It over-allocates by a page and starts where the page boundary falls (no unsafe code: the
/// heap block does not move when the buffer does).
pub struct PageAligned {
    storage: Box<[u8]>,
    start: usize,
    len: usize,
}

impl PageAligned {
    pub fn zeroed(len: usize) -> Self {
        let storage = vec![0u8; len + DIRECT_ALIGN].into_boxed_slice();
        let start = storage.as_ptr().align_offset(DIRECT_ALIGN);
        PageAligned {
            storage,
            start,
            len,
        }
    }

    /// Makes the buffer at least `len` long, keeping its first `keep` bytes (a larger buffer,
    /// page-aligned as well, with those bytes copied over).
    pub fn grow(&mut self, len: usize, keep: usize) {
        if len <= self.len {
            return;
        }
        let keep = keep.min(self.len);
        let mut bigger = PageAligned::zeroed(len);
        bigger[..keep].copy_from_slice(&self[..keep]);
        *self = bigger;
    }
}

impl Default for PageAligned {
    fn default() -> Self {
        PageAligned::zeroed(0)
    }
}

impl std::ops::Deref for PageAligned {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }
}

impl std::ops::DerefMut for PageAligned {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + self.len]
    }
}

impl std::fmt::Debug for PageAligned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageAligned")
            .field("len", &self.len)
            .finish()
    }
}
